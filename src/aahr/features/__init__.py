"""Feature-extraction stages: region features (the bottom-up-attention role), the frozen global branch
(the CLIP role) and the text backbones.

One idea per module:

- ``store``: writing ``{split}_*.npy`` atomically and memory-mapping them back with validation.
- ``images``: reading a split's images (synth PNGs or real photos) in a fixed order.
- ``proposals``: where the regions are (a learned centre/size head, decoded without the scene truth).
- ``regions``: the synth region extractor (CNN + RoIAlign + shape/colour/size heads), its training
  on the pretrain split and K-region extraction for every split.
- ``detector``: the real-image path (torchvision Faster R-CNN from a local weights file).
- ``global_branch``: the synth CLIP-style dual encoder and the OpenCLIP ViT-B-32 path.
- ``text``: text backbones (a local Hugging Face BERT, by default the packaged MiniLM; a BiGRU).
- ``common``: seeding, devices, the recall helper and the weights-file error shared by the stages.
"""
