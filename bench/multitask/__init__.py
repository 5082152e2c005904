"""Multi-task track (paper section 2.3, Algorithm 3, section 3.3, Table 4).

A shared encoder reads a noisy grayscale image; task decoders predict the class, the
colour image, Canny edges and the clean grayscale image. GREAT places a gradient-alignment
layer (GAL) between the encoder and each decoder and trains it adversarially against a
task classifier that reads the scaled gradients; the baselines weight the task losses
(equal, Kendall et al.'s uncertainty, Chen et al.'s GradNorm).
"""
