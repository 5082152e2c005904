"""Reports: every view of the tidy rows. The paper's tables (``tables``), the Linf worst case
(``worst_case``), paired comparisons against a reference (``compare``), the paper's claims
and their verdicts (``claims``, ``family``, ``verdict_matrix``), gradient-masking checks
(``masking``), curves (``plots``), the write-up's numbers (``writeup``), one HTML page
(``html``), pandas frames for users (``results``), and the one function that writes them all
into a results folder (``write``)."""
