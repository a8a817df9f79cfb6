"""Training AAHR (separate from the model library in aahr.model):

- ``data``: the image-caption pair dataset in the precomp layout, the global batch sampler, region
  dropout and word masking augmentation, tokenisation for the text backbone.
- ``distributed``: process-group setup for torchrun (gloo on CPU, NCCL on GPU) and the all-gather /
  all-reduce helpers that make a split batch train exactly like the whole one.
- ``loop``: the train / validate / checkpoint / resume loop behind ``aahr train``.
"""
