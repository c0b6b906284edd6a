"""Process-wide quietening of the Hugging Face libraries: a worker logs through structlog, not progress bars."""

from __future__ import annotations

import functools
import warnings


@functools.cache
def quiet_libraries() -> None:
    """Turn off tqdm bars and info/warning chatter of transformers, datasets (where installed: training uses it,
    evaluation does not) and the hub client (once per process)."""
    import transformers

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()  # also the hub client's bars
    try:
        import datasets
    except ImportError:
        pass
    else:
        datasets.utils.logging.set_verbosity_error()
        datasets.disable_progress_bars()
    # peft reads this deprecated property of transformers 5 models on every get_peft_model
    warnings.filterwarnings("ignore", message="`is_gradient_checkpointing` is deprecated", category=FutureWarning)
