"""Lightning's cloud advertisements are filtered out; everything else it says still shows."""

import logging

from mnist_lightning.quiet import QuietLightning


def record(message: str) -> logging.LogRecord:
    return logging.LogRecord("lightning.pytorch.utilities.rank_zero", logging.INFO, __file__, 1, message, None, None)


def test_only_the_advertisements_are_dropped():
    quiet = QuietLightning()
    assert not quiet.filter(record("💡 Tip: For seamless cloud uploads and versioning, try installing litmodels"))
    assert not quiet.filter(record("Trainer already configured with model summary callbacks: [<class 'ExactSummary'>]"))
    assert quiet.filter(record("GPU available: False, used: False"))
    assert quiet.filter(record("Tip: a tip that is not the cloud's"))


def test_the_trainer_for_python_leaves_the_advertisements_out(tmp_path):
    import mnist_lightning
    from mnist_lightning.quiet import RANK_ZERO_LOGGER

    rank_zero = logging.getLogger(RANK_ZERO_LOGGER)
    for installed in [f for f in rank_zero.filters if isinstance(f, QuietLightning)]:
        rank_zero.removeFilter(installed)
    mnist_lightning.trainer(runs_dir=tmp_path, enable_progress_bar=False)
    assert any(isinstance(f, QuietLightning) for f in rank_zero.filters)
