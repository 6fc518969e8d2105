"""Subword ids from a SentencePiece model learned on the training split.

The SentencePiece model (unigram or BPE) is trained offline, in Python, on the
*standardized* training texts; inside the graph, ``tensorflow_text`` runs the
same model, so training, ``tf.data`` and the exported model all cut texts the
same way. SentencePiece treats a text as a stream of characters (spaces are
just the ``▁`` symbol), so scripts without spaces (zh, ja, th) need no
word-splitting fallback.

The serialized model proto travels inside ``model.keras`` as an asset file
(Keras 3's ``save_assets``/``load_assets`` layer hooks), and a loaded layer
tokenizes with it.

The tokenizer op is created in every graph that tokenizes (and anew for each
eager call) rather than once per layer: tensorflow_text's SentencePiece
resource is owned by the op kernel that made it, and ``tf.random.set_seed``
(which every ``kmexp.train.train`` calls) clears TensorFlow's eager kernel
cache, which deletes an eagerly made tokenizer ("Resource ... does not exist").
A graph recreates its resource from the model constant when it needs to.
"""

from __future__ import annotations

import io
import logging
import os
from collections.abc import Mapping, Sequence

import keras
import sentencepiece as spm
from sentencepiece import sentencepiece_model_pb2
import tensorflow as tf
import tensorflow_text as tf_text

from kmexp.config.validation import check_preprocessor, raise_problems
from kmexp.encoders import text, vocab
from kmexp.encoders.base import PACKAGE, SequencePreprocessor

log = logging.getLogger(__name__)

# SentencePiece ids with a fixed meaning: 0 pads (the kmexp convention), 1 is unknown.
PAD_ID = 0
UNK_ID = 1
# Training texts longer than this many bytes are skipped by SentencePiece (its default is 4192).
MAX_SENTENCE_BYTES = 1 << 16
# Fixed so that the same texts give the same model: SentencePiece's result depends on it.
TRAINER_THREADS = 16
TOO_MANY_PIECES = "Vocabulary size too high"


def normalization_rule(standardize: Mapping) -> str:
    """SentencePiece's own normalization, applied again when tokenizing.

    The texts it sees are already standardized by kmexp, so it must change
    nothing: NFKC is idempotent, so NFKC-standardized text keeps ``nfkc``
    (which, unlike ``identity``, does not log a line each time a tokenizer is
    made); other forms get ``identity``.
    """
    return "nfkc" if standardize.get("normalization") == "NFKC" else "identity"


def piece_count(model_proto: bytes) -> int:
    """Number of pieces (ids) in a serialized SentencePiece model."""
    return len(sentencepiece_model_pb2.ModelProto.FromString(model_proto).pieces)


def train_sentencepiece(
    sentences: Sequence[str], vocab_size: int, model_type: str, character_coverage: float, normalization: str
) -> bytes:
    """Train a SentencePiece model and return its serialized proto.

    ``vocab_size`` is a cap: where the texts support fewer pieces (small data),
    SentencePiece refuses a hard limit, so training is retried with the limit
    made soft, which keeps as many pieces as the data allows.
    """
    raise_problems(check_preprocessor({"model_type": model_type}))
    sentences = [s for s in sentences if s]
    if not sentences:
        raise ValueError("the training texts are all empty after standardization: no subwords to learn")

    def run(hard_vocab_limit: bool) -> bytes:
        proto = io.BytesIO()
        spm.SentencePieceTrainer.train(
            sentence_iterator=iter(sentences),
            model_writer=proto,
            vocab_size=int(vocab_size),
            model_type=model_type,
            character_coverage=float(character_coverage),
            hard_vocab_limit=hard_vocab_limit,
            # kmexp's standardization already ran; the model must not change the text again.
            normalization_rule_name=normalization,
            pad_id=PAD_ID,
            unk_id=UNK_ID,
            bos_id=-1,
            eos_id=-1,
            max_sentence_length=MAX_SENTENCE_BYTES,
            num_threads=TRAINER_THREADS,
            minloglevel=2,
        )
        return proto.getvalue()

    try:
        return run(hard_vocab_limit=True)
    except RuntimeError as err:
        if TOO_MANY_PIECES not in str(err):
            raise
        log.info("subword: the training texts support fewer than %d pieces; keeping as many as they allow", vocab_size)
        return run(hard_vocab_limit=False)


@keras.saving.register_keras_serializable(package=PACKAGE)
class SubwordSequencer(SequencePreprocessor):
    """Raw strings -> padded SentencePiece ids [batch, max_length].

    Id 0 is padding and id 1 an unknown piece (a character too rare in
    training); pieces follow, so ``id_count`` is the model's piece count.
    ``vocab_size`` is what was asked for, ``vocabulary_size`` what the
    training texts gave (at most ``vocab_size``).
    """

    ASSET_FILE = "sentencepiece.model"

    def __init__(
        self,
        standardize: Mapping,
        vocab_size: int,
        model_type: str,
        character_coverage: float,
        max_length: int,
        vocabulary_size: int | None = None,
        analyzer: str = "subword",
        ngram_range: Sequence[int] = (1, 1),
        **kwargs,
    ):
        super().__init__(standardize, analyzer, ngram_range, max_length, **kwargs)
        # The rules validate() applies to encoder.preprocessor, for a caller that skipped it.
        raise_problems(check_preprocessor({
            "vocab_size": vocab_size, "model_type": model_type,
            "character_coverage": character_coverage, "max_length": max_length,
        }))
        self.vocab_size = int(vocab_size)
        self.model_type = model_type
        self.character_coverage = float(character_coverage)
        self.vocabulary_size = None if vocabulary_size is None else int(vocabulary_size)
        self._model_proto: bytes | None = None

    @property
    def id_count(self) -> int:
        """Number of distinct ids the layer emits: padding, unknown and the pieces."""
        return int(self.vocabulary_size)

    @property
    def model_proto(self) -> bytes:
        """The serialized SentencePiece model (load it with ``sentencepiece.SentencePieceProcessor``)."""
        if self._model_proto is None:
            raise RuntimeError(f"{self.name}: no SentencePiece model yet; call adapt(train_texts) or load a saved model")
        return self._model_proto

    def _set_model(self, proto: bytes) -> None:
        self._model_proto = bytes(proto)
        self.vocabulary_size = piece_count(self._model_proto)

    def _tokenizer(self) -> tf_text.SentencepieceTokenizer:
        """A tokenizer for the graph being traced (or this eager call); see the module docstring."""
        return tf_text.SentencepieceTokenizer(model=self.model_proto, out_type=tf.int32)

    def adapt(self, texts: Sequence[str]) -> SubwordSequencer:
        """Learn the pieces from the standardized training texts only."""
        standardized = [
            s.decode("utf-8") for batch in vocab.batches(texts) for s in text.standardize(batch, self.standardize).numpy()
        ]
        self._set_model(
            train_sentencepiece(
                standardized,
                self.vocab_size,
                self.model_type,
                self.character_coverage,
                normalization_rule(self.standardize),
            )
        )
        self.built = True
        return self

    def tokens(self, texts: tf.Tensor) -> tf.RaggedTensor:
        """Standardize then cut a batch of raw strings into ragged SentencePiece pieces."""
        tokenizer = self._tokenizer()
        return tokenizer.id_to_string(tokenizer.tokenize(text.standardize(texts, self.standardize)))

    def call(self, texts):
        ids = self._tokenizer().tokenize(text.standardize(texts, self.standardize))
        return ids.to_tensor(PAD_ID, shape=[None, self.max_length])

    def save_assets(self, dir_path):
        with open(os.path.join(dir_path, self.ASSET_FILE), "wb") as f:
            f.write(self.model_proto)

    def load_assets(self, dir_path):
        with open(os.path.join(dir_path, self.ASSET_FILE), "rb") as f:
            self._set_model(f.read())
        self.built = True

    def get_config(self):
        return {
            **super().get_config(),
            "vocab_size": self.vocab_size,
            "model_type": self.model_type,
            "character_coverage": self.character_coverage,
            "vocabulary_size": self.vocabulary_size,
        }
