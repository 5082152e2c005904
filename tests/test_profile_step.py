"""The step profiler's command line: bad input is refused clearly, a valid run lists operators."""
from tests.benchmarks.profile_step import main, profile_step


def test_unknown_defense_is_refused(capsys):
    assert main(["graet"]) == 2
    err = capsys.readouterr().err
    assert "unknown defense 'graet'" in err and "great" in err


def test_nonpositive_steps_are_refused(capsys):
    assert main(["great", "--steps", "0"]) == 2
    assert "--steps and --threads must be at least 1" in capsys.readouterr().err


def test_profile_lists_the_convolutions():
    rows = profile_step("baseline", steps=1, warmup=0, top=50)
    assert any("convolution" in key for key, *_ in rows)
    assert all(ms >= 0 and n >= 0 for _, ms, n, _ in rows)
