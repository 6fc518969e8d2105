"""Text encoders that live inside the saved model.

An encoder has two parts, each built from its own config subtree:

- a *preprocessor*: a non-trainable Keras layer that turns raw strings into
  numbers (bag-of-n-gram features, or token ids). It is adapted on the training
  split only, runs on the CPU inside ``tf.data`` during training, and is placed
  in front of the trained network in the exported model, so that ``model.keras``
  takes raw strings in any script.
- an optional *embedder*: trainable layers between the preprocessor and the
  head (an embedding with pooling for token ids; nothing for bag features).

Every layer is registered as Keras-serializable, so ``import kmexp.layers`` (or
``kmexp.load_model``) is all a fresh process needs to load a model with safe mode on.
"""

from kmexp.encoders.bag import TextFeaturizer
from kmexp.encoders.pretrained import PresetEncoder, PresetTokenizer
from kmexp.encoders.sequence import ByteSequencer, ConvPooling, PooledEmbedding, TokenSequencer
from kmexp.encoders.subword import SubwordSequencer
from kmexp.encoders.transformer import TransformerBlock, TransformerEmbedder

__all__ = [
    "TextFeaturizer",
    "TokenSequencer",
    "PooledEmbedding",
    "ByteSequencer",
    "ConvPooling",
    "SubwordSequencer",
    "TransformerBlock",
    "TransformerEmbedder",
    "PresetTokenizer",
    "PresetEncoder",
]
