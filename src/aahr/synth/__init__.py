"""The embedded `synth` dataset: scenes, captions with exact extended positives, and the truth oracle."""
