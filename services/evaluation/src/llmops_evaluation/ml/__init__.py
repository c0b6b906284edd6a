"""Generation with a local model for the evaluation worker: batched ``model.generate`` in a child process.

Heavy libraries (torch, transformers, peft) are imported inside the functions of the submodules, so importing this
package stays cheap.
"""
