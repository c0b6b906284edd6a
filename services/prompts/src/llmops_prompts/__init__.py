"""The prompts service: versioned, tested, labelled prompt templates rendered the same way everywhere."""
