"""Typed schemas for the root config and every config group, stored in Hydra's ConfigStore.

Hydra's "structured config schema" pattern
(https://hydra.cc/docs/tutorials/structured_config/schema/): the YAML files keep
every value and the comment on each knob; these dataclasses only say which
keys exist and of what type. Each option's YAML names its schema first in its
defaults list, e.g. conf/optimizer/adam.yaml::

    defaults:
      - /schema/optimizer/adam@_here_
      - _self_

so that an unknown key (`optimizer.learning_rat=0.1`) or a wrong type
(`trainer.epochs=ten`) fails while Hydra composes, before any work starts.

Why the fields are MISSING: the YAML is the one source of every value, so a
default can never hide here and drift from the file a user reads.

Why a `schema/` group: schemas live apart from the selectable options, so
`loss=nope` lists only real options, and as config (not group) defaults they
do not show up in `hydra.runtime.choices`.

Why one dataclass per target class: the `_target_` picks a Python class and the
schema lists that class's arguments; options sharing a class (the `char_ngram`,
`onehot` and `tfidf` encoders, or `relu` and `gelu`) share its schema. Each
group's base class holds the keys every option has, and the root config types
the group by that base, so any of its schemas fits.

Values (ranges, names) are checked after composition by kmexp.config.validation.validate.
"""

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING

# The ConfigStore group every schema lives under: schema/<config group>/<name>.
SCHEMA_GROUP = "schema"


# --- data ---------------------------------------------------------------------------------


@dataclass
class DataConfig:
    _target_: str = MISSING
    max_chars: int = MISSING  # conf/data/_common.yaml
    on_long_text: str = MISSING


@dataclass
class SIB200Config(DataConfig):
    root: Optional[str] = MISSING
    code: str = MISSING
    codes: Any = MISSING  # null, a list of codes or "all"
    eval_codes: Any = MISSING  # null, a list of codes or "all"
    cache_dir: str = MISSING
    base_url: str = MISSING
    pool: Any = MISSING  # ${language.pool}
    pool_weight: float = MISSING
    commit: str = MISSING
    timeout_s: float = MISSING


@dataclass
class LabeledFilesConfig(DataConfig):
    train: str = MISSING
    dev: Optional[str] = MISSING
    test: str = MISSING
    text_column: str = MISSING
    label_column: str = MISSING
    dev_fraction: float = MISSING
    seed: int = MISSING


@dataclass
class HFSplitsConfig:
    """data=hf: the dataset's split name for each of kmexp's splits; a null dev is carved out of train."""

    train: str = MISSING
    dev: Optional[str] = MISSING
    test: str = MISSING


@dataclass
class HFDatasetConfig(DataConfig):
    path: str = MISSING
    name: Optional[str] = MISSING
    revision: Optional[str] = MISSING
    data_files: Any = MISSING  # null, a path, a list of paths, or {split: path(s)}
    splits: HFSplitsConfig = field(default_factory=HFSplitsConfig)
    text_column: str = MISSING
    label_column: str = MISSING
    locale: str = MISSING
    # null or {<tag>: <config>}; null or {column: <name>, values: {<tag>: <value>}}. Any, checked by validate():
    # OmegaConf 2.3 cannot merge a command-line dict into a typed node that holds null.
    locale_config: Any = MISSING
    locale_filter: Any = MISSING
    dev_fraction: float = MISSING
    seed: int = MISSING
    cache_dir: Optional[str] = MISSING
    timeout_s: float = MISSING
    pool: Any = MISSING  # ${language.pool}
    pool_weight: float = MISSING


# --- language -----------------------------------------------------------------------------


@dataclass
class StandardizeConfig:
    normalization: str = MISSING
    case: str = MISSING
    locale: str = MISSING
    fold_punctuation: bool = MISSING
    strip_diacritics: bool = MISSING
    digits: str = MISSING
    fold_whitespace: bool = MISSING


@dataclass
class LanguageConfig:
    tag: str = MISSING
    code: str = MISSING
    name: str = MISSING
    script: str = MISSING
    spaces: bool = MISSING
    direction: str = MISSING
    word_fallback: str = MISSING  # error | char
    fallback_ngram_range: List[int] = MISSING  # word_fallback=char: the character n-grams
    standardize: StandardizeConfig = MISSING
    pool: Any = MISSING  # null, a number k >= 1 of nearest languages, or a list of codes
    pool_weight: float = MISSING  # the weight of each pooled row in the training loss


@dataclass
class MultiLanguageConfig(LanguageConfig):
    codes: Any = MISSING  # a list of SIB-200 codes or "all"


# --- encoder ------------------------------------------------------------------------------


@dataclass
class PreprocessorConfig:
    _target_: str = MISSING
    # Usually `${language.standardize}`; Any because an interpolation to a node is not type-checked.
    standardize: Any = MISSING


@dataclass
class TextFeaturizerConfig(PreprocessorConfig):
    analyzer: str = MISSING
    ngram_range: List[int] = MISSING
    output_mode: str = MISSING
    sublinear_tf: bool = MISSING
    l2_normalize: bool = MISSING
    sparse: bool = MISSING
    num_bins: Optional[int] = MISSING
    max_tokens: Optional[int] = MISSING
    min_df: int = MISSING
    round_features: Optional[int] = MISSING
    word_ngram_range: Optional[List[int]] = MISSING  # null, or word n-grams added to the analyzer's


@dataclass
class TokenSequencerConfig(PreprocessorConfig):
    analyzer: str = MISSING
    ngram_range: List[int] = MISSING
    max_tokens: Optional[int] = MISSING
    min_df: int = MISSING
    max_length: int = MISSING


@dataclass
class SubwordSequencerConfig(PreprocessorConfig):
    vocab_size: int = MISSING
    model_type: str = MISSING
    character_coverage: float = MISSING
    max_length: int = MISSING


@dataclass
class ByteSequencerConfig(PreprocessorConfig):
    max_length: int = MISSING


@dataclass
class PresetTokenizerConfig(PreprocessorConfig):
    preset: str = MISSING
    sequence_length: int = MISSING


@dataclass
class EmbedderConfig:
    _target_: str = MISSING


@dataclass
class PooledEmbeddingConfig(EmbedderConfig):
    dim: int = MISSING


@dataclass
class ConvPoolingConfig(EmbedderConfig):
    dim: int = MISSING
    filters: int = MISSING
    kernel_size: int = MISSING


@dataclass
class TransformerEmbedderConfig(EmbedderConfig):
    dim: int = MISSING
    num_layers: int = MISSING
    num_heads: int = MISSING
    ff_dim: int = MISSING
    dropout: float = MISSING


@dataclass
class PresetEncoderConfig(EmbedderConfig):
    preset: str = MISSING
    pooling: str = MISSING
    mode: str = MISSING


@dataclass
class PretrainedTrainingConfig:
    """How one mode of a pretrained encoder trains (conf/encoder/pretrained.yaml `training`)."""

    learning_rate: float = MISSING
    epochs: int = MISSING
    batch_size: int = MISSING
    patience: int = MISSING
    steps_per_execution: int = MISSING


@dataclass
class EncoderConfig:
    preprocessor: PreprocessorConfig = field(default_factory=PreprocessorConfig)
    embedder: Optional[EmbedderConfig] = MISSING  # null: bag features go straight to the head


# An option's preprocessor and embedder are empty nodes of their own type rather than MISSING:
# merged into the root's `encoder: EncoderConfig`, a MISSING node would keep the base type.


@dataclass
class BagEncoderConfig(EncoderConfig):
    preprocessor: TextFeaturizerConfig = field(default_factory=TextFeaturizerConfig)


@dataclass
class EmbeddingEncoderConfig(EncoderConfig):
    preprocessor: TokenSequencerConfig = field(default_factory=TokenSequencerConfig)
    embedder: Optional[PooledEmbeddingConfig] = field(default_factory=PooledEmbeddingConfig)


@dataclass
class ByteEncoderConfig(EncoderConfig):
    preprocessor: ByteSequencerConfig = field(default_factory=ByteSequencerConfig)
    embedder: Optional[ConvPoolingConfig] = field(default_factory=ConvPoolingConfig)


@dataclass
class SubwordEncoderConfig(EncoderConfig):
    preprocessor: SubwordSequencerConfig = field(default_factory=SubwordSequencerConfig)
    embedder: Optional[PooledEmbeddingConfig] = field(default_factory=PooledEmbeddingConfig)


@dataclass
class TransformerEncoderConfig(EncoderConfig):
    preprocessor: SubwordSequencerConfig = field(default_factory=SubwordSequencerConfig)
    embedder: Optional[TransformerEmbedderConfig] = field(default_factory=TransformerEmbedderConfig)


@dataclass
class PretrainedEncoderConfig(EncoderConfig):
    preset: str = MISSING
    mode: str = MISSING
    sequence_length: int = MISSING
    pooling: str = MISSING
    cache_dir: str = MISSING
    training: Dict[str, PretrainedTrainingConfig] = MISSING
    preprocessor: PresetTokenizerConfig = field(default_factory=PresetTokenizerConfig)
    embedder: Optional[PresetEncoderConfig] = field(default_factory=PresetEncoderConfig)


# --- activation, loss, optimizer, metric --------------------------------------------------


@dataclass
class ActivationConfig:
    _target_: str = MISSING


@dataclass
class KerasActivationConfig(ActivationConfig):
    activation: str = MISSING  # a name in keras.activations


@dataclass
class LeakyReLUConfig(ActivationConfig):
    negative_slope: float = MISSING


@dataclass
class LossConfig:
    _target_: str = MISSING


@dataclass
class CrossentropyConfig(LossConfig):
    from_logits: bool = MISSING
    label_smoothing: float = MISSING


@dataclass
class FocalCrossentropyConfig(LossConfig):
    from_logits: bool = MISSING
    alpha: float = MISSING
    gamma: float = MISSING


@dataclass
class OptimizerConfig:
    _target_: str = MISSING
    learning_rate: float = MISSING


@dataclass
class AdamConfig(OptimizerConfig):
    beta_1: float = MISSING
    beta_2: float = MISSING


@dataclass
class AdamWConfig(AdamConfig):
    weight_decay: float = MISSING


@dataclass
class WarmupAdamWConfig(AdamWConfig):
    _partial_: bool = MISSING
    warmup_fraction: float = MISSING


@dataclass
class SGDConfig(OptimizerConfig):
    momentum: float = MISSING
    nesterov: bool = MISSING


@dataclass
class AdagradConfig(OptimizerConfig):
    initial_accumulator_value: float = MISSING


@dataclass
class RMSpropConfig(OptimizerConfig):
    rho: float = MISSING
    momentum: float = MISSING


@dataclass
class LBFGSConfig(OptimizerConfig):
    history_size: int = MISSING
    iterations_per_epoch: int = MISSING
    tolerance_grad: float = MISSING
    tolerance_change: float = MISSING
    line_search: str = MISSING


@dataclass
class MetricConfig:
    _target_: str = MISSING


@dataclass
class AveragedMetricConfig(MetricConfig):
    average: str = MISSING  # macro | weighted | micro


# --- device, model, trainer, logger -------------------------------------------------------


@dataclass
class DeviceConfig:
    kind: str = MISSING
    precision: str = MISSING
    jit_compile: bool = MISSING
    intra_op_threads: Optional[int] = MISSING  # null = TensorFlow's default
    inter_op_threads: Optional[int] = MISSING


@dataclass
class AutoDeviceConfig(DeviceConfig):
    pass


@dataclass
class CPUDeviceConfig(DeviceConfig):
    pass


@dataclass
class GPUDeviceConfig(DeviceConfig):
    pass


@dataclass
class MultiGPUDeviceConfig(DeviceConfig):
    devices: Optional[List[str]] = MISSING  # null = every visible GPU
    all_reduce: str = MISSING


@dataclass
class MultiWorkerDeviceConfig(DeviceConfig):
    pass


@dataclass
class TPUDeviceConfig(DeviceConfig):
    tpu: str = MISSING  # local, a TPU name or a grpc:// address


@dataclass
class ModelConfig:
    hidden_units: List[int] = MISSING
    dropout: float = MISSING
    l2: float = MISSING
    nb_weighting: Optional[str] = MISSING  # null | auto | per_class | per_feature
    nb_alpha: float = MISSING


@dataclass
class TrainerConfig:
    epochs: int = MISSING
    batch_size: int = MISSING
    patience: int = MISSING
    min_delta: float = MISSING
    monitor: str = MISSING
    steps_per_execution: int = MISSING
    backup_interval_s: float = MISSING
    gradient_accumulation_steps: Optional[int] = MISSING


@dataclass
class LoggerConfig:
    _target_: str = MISSING


@dataclass
class WandbLoggerConfig(LoggerConfig):
    project: str = MISSING
    entity: Optional[str] = MISSING
    mode: str = MISSING
    job_type: str = MISSING
    tag_groups: List[str] = MISSING
    log_model: bool = MISSING
    init_timeout_s: float = MISSING
    system_metrics: bool = MISSING
    console: str = MISSING
    quiet: bool = MISSING


@dataclass
class CSVLoggerConfig(LoggerConfig):
    filename: str = MISSING
    per_class_filename: str = MISSING


# --- root ---------------------------------------------------------------------------------


@dataclass
class KmexpConfig:
    """The composed experiment: one option per group, plus the top-level keys of conf/config.yaml."""

    data: DataConfig = MISSING
    language: LanguageConfig = MISSING
    encoder: EncoderConfig = MISSING
    activation: ActivationConfig = MISSING
    loss: LossConfig = MISSING
    optimizer: OptimizerConfig = MISSING
    # Several metrics at once, each under its own name. Empty (not MISSING) when `metric=[]`
    # selects none, so that validate() can say so instead of a missing-value error.
    metric: Dict[str, MetricConfig] = field(default_factory=dict)
    device: DeviceConfig = MISSING
    model: ModelConfig = MISSING
    trainer: TrainerConfig = MISSING
    logger: LoggerConfig = MISSING
    seed: int = MISSING
    eval_languages: Any = MISSING  # null, a list of SIB-200 codes or "all"
    resume: Optional[str] = MISSING


# (config group, schema name, dataclass): stored as schema/<group>/<name>.
SCHEMAS: tuple[tuple[str, str, type], ...] = (
    ("data", "sib200", SIB200Config),
    ("data", "labeled_files", LabeledFilesConfig),
    ("data", "hf_dataset", HFDatasetConfig),
    ("language", "language", LanguageConfig),
    ("language", "multi", MultiLanguageConfig),
    ("encoder", "bag", BagEncoderConfig),
    ("encoder", "embedding", EmbeddingEncoderConfig),
    ("encoder", "byte", ByteEncoderConfig),
    ("encoder", "subword", SubwordEncoderConfig),
    ("encoder", "transformer", TransformerEncoderConfig),
    ("encoder", "pretrained", PretrainedEncoderConfig),
    ("activation", "activation", KerasActivationConfig),
    ("activation", "leaky_relu", LeakyReLUConfig),
    ("loss", "crossentropy", CrossentropyConfig),
    ("loss", "focal", FocalCrossentropyConfig),
    ("loss", "no_arguments", LossConfig),
    ("optimizer", "adam", AdamConfig),
    ("optimizer", "adamw", AdamWConfig),
    ("optimizer", "warmup_adamw", WarmupAdamWConfig),
    ("optimizer", "sgd", SGDConfig),
    ("optimizer", "adagrad", AdagradConfig),
    ("optimizer", "rmsprop", RMSpropConfig),
    ("optimizer", "lbfgs", LBFGSConfig),
    ("metric", "no_arguments", MetricConfig),
    ("metric", "averaged", AveragedMetricConfig),
    ("device", "auto", AutoDeviceConfig),
    ("device", "cpu", CPUDeviceConfig),
    ("device", "gpu", GPUDeviceConfig),
    ("device", "multi_gpu", MultiGPUDeviceConfig),
    ("device", "multi_worker", MultiWorkerDeviceConfig),
    ("device", "tpu", TPUDeviceConfig),
    ("model", "mlp", ModelConfig),
    ("trainer", "trainer", TrainerConfig),
    ("logger", "wandb", WandbLoggerConfig),
    ("logger", "csv", CSVLoggerConfig),
    ("logger", "no_arguments", LoggerConfig),
)


def store_schemas(store: ConfigStore | None = None) -> None:
    """Put the root schema at `schema/root` and each group's at `schema/<group>/<name>`.

    Storing again replaces the same entries, so calling this twice is harmless.
    """
    store = ConfigStore.instance() if store is None else store
    store.store(group=SCHEMA_GROUP, name="root", node=KmexpConfig)
    for group, name, node in SCHEMAS:
        store.store(group=f"{SCHEMA_GROUP}/{group}", name=name, node=node)
