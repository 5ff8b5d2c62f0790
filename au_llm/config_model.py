"""The typed model configuration: backbone, projector, LLM and LoRA, heads, explanations.

Part of the experiment configuration (:mod:`au_llm.config`), which re-exports every class here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from au_llm.answers import FORMATS
from au_llm.config_checks import (
    DEFAULT_PROMPT,
    LLM_READERS,
    PROMPT_READERS,
    READERS,
    Activation,
    ChatTemplate,
    ConfigError,
    Head,
    TinyArch,
    check_choice,
    check_positive,
)

LLM_SOURCES = ("tiny", "smollm2", "path")
"""``model.llm.source``: where the LLM's weights come from."""
LLM_TUNINGS = ("lora", "norms", "frozen")
"""``model.llm.tuning``: what of the LLM trains."""
READOUTS = ("last", "layer", "mix")
"""``model.llm.readout``: which of the LLM's hidden states the AU head reads."""
PROJECTOR_TOKENS = ("fused", "cells")
"""``model.projector.tokens``: what each visual token is made from."""


@dataclass
class BackboneConfig:
    """The 3D-CNN that turns a clip into mid- and high-level features.

    Attributes:
        name: ``led3dcnn`` (AU-LLM's backbone), or a pytorchvideo model built without pretrained
            weights: ``x3d``, ``r2plus1d``, ``slow``, ``csn``.
        dropout: Dropout rate inside the backbone.
        high_dim: Width of the high-level feature of ``led3dcnn``.
        pretrained_path: Optional local state-dict file loaded into the backbone.
        mid_pool: Output size (T, H, W) of adaptive average pooling applied to the mid map before
            it is flattened; empty keeps the full map (the paper's form for ``led3dcnn``).
        depth: Depth of the pytorchvideo ResNet-family models (``slow``, ``r2plus1d``, ``csn``).
        led_add_input: ``led3dcnn`` only: add the input to the filtered signal (EVM form,
            ``x + alpha * (lowpass_r1 - lowpass_r2)``); false keeps the reference's motion-only
            form ``alpha * (lowpass_r1 - lowpass_r2)``.
        builder_kwargs: Extra keyword arguments for the pytorchvideo builder (e.g.
            ``width_factor``/``depth_factor`` for ``x3d``, ``stem_dim_out`` for the ResNet family).
    """

    name: str = "led3dcnn"
    dropout: float = 0.3
    high_dim: int = 256
    pretrained_path: str | None = None
    mid_pool: list[int] = field(default_factory=list)
    depth: int = 50
    led_add_input: bool = False
    builder_kwargs: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # The backbones' table lives with their builders (torch); read when a config is checked.
        from au_llm.model.backbones import BACKBONES

        check_choice("model.backbone", "name", self.name, BACKBONES)
        if self.name in ("slow", "r2plus1d", "csn") and self.depth not in (50, 101, 152):
            raise ConfigError(f"model.backbone.depth = {self.depth}: expected 50, 101 or 152")
        check_positive("model.backbone", "high_dim", self.high_dim)
        if self.mid_pool and len(self.mid_pool) != 3:
            raise ConfigError(f"model.backbone.mid_pool = {self.mid_pool}: expected [T, H, W]")
        if not 0 <= self.dropout < 1:
            raise ConfigError(f"model.backbone.dropout = {self.dropout}: expected 0 <= p < 1")


@dataclass
class ProjectorConfig:
    """The Enhanced Fusion Projector: concat(mid, high) -> MLP -> one LLM token.

    Attributes:
        hidden: Hidden width; 0 means the paper's (in + out) / 2.
        activation: ``gelu`` or ``relu``.
        dropout: Dropout between the two linear layers.
        layer_norm: Apply LayerNorm to the output token.
        tokens: ``fused`` (AU-LLM's): the ``model.llm.n_visual_tokens`` tokens come from one MLP
            on concat(mid, high); ``cells``: one token per cell of the mid-level map pooled to
            ``model.backbone.mid_pool`` ``[T, H, W]`` (``T * H * W`` must equal
            ``n_visual_tokens``), each from that cell's channels and the high-level feature
            through one shared MLP.
    """

    hidden: int = 0
    activation: str = "gelu"
    dropout: float = 0.1
    layer_norm: bool = False
    tokens: str = "fused"

    def __post_init__(self) -> None:
        check_choice("model.projector", "activation", self.activation, Activation)
        check_positive("model.projector", "hidden", self.hidden, allow_zero=True)
        check_choice("model.projector", "tokens", self.tokens, PROJECTOR_TOKENS)


@dataclass
class LoraConfig:
    """LoRA adapters on the frozen LLM (peft).

    Attributes:
        r: Rank.
        alpha: Scaling numerator (the update is scaled by alpha / r).
        dropout: Dropout on the LoRA input.
        target_modules: Names of the linear layers that get adapters.
    """

    r: int = 16
    alpha: int = 32
    dropout: float = 0.1
    target_modules: list[str] = field(default_factory=lambda: ["q_proj", "v_proj"])

    def __post_init__(self) -> None:
        check_positive("model.llm.lora", "r", self.r)
        if not self.target_modules:
            raise ConfigError("model.llm.lora.target_modules: expected at least one module name")


@dataclass
class TinyLLMConfig:
    """A random-initialised causal LM for tests and the demo (no download).

    Attributes:
        arch: ``qwen2`` or ``llama``.
        hidden_size: Model width.
        num_layers: Decoder layers.
        num_heads: Attention heads.
        num_kv_heads: Key/value heads (grouped-query attention).
        intermediate_size: MLP width.
        vocab_size: Vocabulary size (at least 259: the built-in byte tokenizer's ids).
        seed: Seed of the random base weights (the frozen base is the same in every fold).
        init_std: Standard deviation of the random weights. Hugging Face's 0.02 gives a narrow
            model near-uniform next-token logits that LoRA cannot sharpen; text-answer tests use a
            larger value.
    """

    arch: str = "qwen2"
    hidden_size: int = 128
    num_layers: int = 2
    num_heads: int = 4
    num_kv_heads: int = 2
    intermediate_size: int = 256
    vocab_size: int = 512
    seed: int = 0
    init_std: float = 0.02

    def __post_init__(self) -> None:
        check_choice("model.llm.tiny", "arch", self.arch, TinyArch)
        if self.vocab_size < 259:
            raise ConfigError(
                f"model.llm.tiny.vocab_size = {self.vocab_size}: expected at least 259 "
                "(3 special ids + 256 bytes)"
            )
        if self.hidden_size % self.num_heads or self.num_heads % self.num_kv_heads:
            raise ConfigError(
                "model.llm.tiny: hidden_size must be divisible by num_heads and num_heads by "
                f"num_kv_heads (got {self.hidden_size}, {self.num_heads}, {self.num_kv_heads})"
            )


@dataclass
class LLMConfig:
    """The causal LLM that reads the prompt and the visual token.

    With a reader other than the LLM (``model.reader``), the LLM's configuration still sets the
    visual token's width (its hidden size), and its shape the size of the control.

    Attributes:
        source: ``tiny`` (random init from ``tiny``), ``smollm2`` (the built-in pretrained
            SmolLM2-135M-Instruct, installed from the package registry) or ``path`` (a local
            Hugging Face causal LM directory, or a ``.gguf`` file, at ``path``). The model without
            an LLM is ``model.reader: none``.
        path: Local model directory or ``.gguf`` file for ``source: path``.
        tiny: Shape of the random model for ``source: tiny``.
        prompt: Prompt text. If it contains ``placeholder``, the visual tokens go there;
            otherwise the visual token is appended after the prompt (the paper's layout).
        placeholder: Marker of a visual token inside ``prompt``.
        n_visual_tokens: Visual tokens per clip (the paper uses one).
        lora: LoRA settings.
        fast_path: Use the prompt-cache fast path (set false only to compare with the
            straightforward path).
        chat_template: ``auto`` applies the tokenizer's chat template to the prompt for
            ``source: path`` when the tokenizer has one (the built-in SmolLM2 and the tiny LLM
            keep the plain prompt); ``on`` applies it for any source (an error when the tokenizer
            has none); ``off`` never (see :mod:`au_llm.model.processing_au_llm`).
        tuning: What of the LLM trains: ``lora`` (adapters of ``lora``, AU-LLM's), ``norms``
            (only the weights of its normalisation layers, RMSNorm/LayerNorm, starting from the
            pretrained values) or ``frozen`` (nothing).
        readout: The hidden state the AU head reads: ``last`` (the final layer's, after the
            final norm, AU-LLM's), ``layer`` (layer ``readout_layer``'s, after the final norm:
            the LLM is cut to its first ``readout_layer`` layers, the later ones never run, for
            text answers too) or ``mix`` (a learnt softmax mix over every layer's output, each
            after the final norm; zero-initialised mixing weights, i.e. the mean).
        readout_layer: With ``readout: layer``, the layer read, 1 .. the LLM's layer count.
    """

    source: str = "tiny"
    path: str | None = None
    tiny: TinyLLMConfig = field(default_factory=TinyLLMConfig)
    prompt: str = DEFAULT_PROMPT
    placeholder: str = "<video>"
    n_visual_tokens: int = 1
    lora: LoraConfig = field(default_factory=LoraConfig)
    fast_path: bool = True
    chat_template: str = "auto"
    tuning: str = "lora"
    readout: str = "last"
    readout_layer: int = 0

    def __post_init__(self) -> None:
        if self.source == "none":
            raise ConfigError(
                "model.llm.source = 'none' was replaced by model.reader = none (the configured "
                "LLM's hidden size sets the token width); set model.reader: none"
            )
        check_choice("model.llm", "source", self.source, LLM_SOURCES)
        check_choice("model.llm", "chat_template", self.chat_template, ChatTemplate)
        if self.source == "path" and not self.path:
            raise ConfigError(
                "model.llm.source = 'path' needs model.llm.path (a local directory or .gguf file)"
            )
        check_positive("model.llm", "n_visual_tokens", self.n_visual_tokens)
        check_choice("model.llm", "tuning", self.tuning, LLM_TUNINGS)
        check_choice("model.llm", "readout", self.readout, READOUTS)
        if (self.readout == "layer") != (self.readout_layer > 0):
            raise ConfigError(
                f"model.llm.readout_layer = {self.readout_layer}: expected a layer >= 1 with "
                "readout: layer, and 0 otherwise"
            )
        layers = self.tiny.num_layers
        if self.source == "tiny" and self.readout_layer > layers:
            raise ConfigError(
                f"model.llm.readout_layer = {self.readout_layer}: the tiny LLM has {layers} "
                "layer(s)"
            )


@dataclass
class TextConfig:
    """Text answers generated by the LLM's own LM head (AU-LLaVA's output formats).

    How they are trained is set in ``train`` (``text_weight``, ``linear_weight``,
    ``format_weights``, ``first_format_epochs``) and how they are decoded in ``generation``.

    Attributes:
        formats: Answer formats the model learns and gives: ``list``, ``yesno``, ``json``,
            ``names`` (see :mod:`au_llm.answers`).
    """

    formats: list[str] = field(default_factory=lambda: ["list", "yesno", "json", "names"])

    def __post_init__(self) -> None:
        if not self.formats or len(set(self.formats)) != len(self.formats):
            raise ConfigError(f"model.text.formats = {self.formats}: expected distinct formats")
        for name in self.formats:
            check_choice("model.text", "formats", name, FORMATS)


@dataclass
class ModelConfig:
    """The whole AU-LLM model: backbone -> projector -> LLM -> AU head(s).

    Attributes:
        backbone: The 3D-CNN.
        projector: The Enhanced Fusion Projector.
        llm: The LoRA-tuned causal LLM.
        reader: What reads the visual token(s) (:mod:`au_llm.model.readers`): ``llm`` (the
            configured LLM after its prompt, AU-LLM's) or a control: ``none`` (the head reads the
            visual token(s) directly), ``mlp`` (a two-layer MLP with as many trainable
            parameters as the LLM's LoRA adapters), ``resmlp`` (a residual MLP, one pre-norm
            block per LLM layer, width the hidden size), ``attention`` (one trainable
            self-attention layer over the prompt's LLM embeddings and the visual token(s); the
            head reads the last position), ``transformer`` (the same with an MLP: one full
            transformer layer), ``llm_reinit`` (the same LLM architecture with its weights
            re-initialised at random from ``reader_seed``, frozen, with ``llm.tuning``) or
            ``llm_random_prompt`` (the pretrained LLM after a prompt of random token ids of the
            same length, drawn from ``reader_seed``). Every control's token width is the
            configured LLM's hidden size, read from its configuration (no weights loaded for
            ``none``, ``mlp``, ``resmlp``).
        reader_seed: Seed of a control's fixed random parts (the re-initialised LLM weights, the
            random prompt): the same in every fold and run seed.
        head: ``linear`` (one score per AU from the last hidden state, AU-LLM's), ``text`` (the
            LLM answers in words, AU-LLaVA's; the AU decisions are the first format's parsed
            answer), or ``both`` (trained together; the linear head gives the scores).
        text: The answer formats (``head: text`` or ``both``).
        skip_head: Add a skip path to the AU head: ``head(h_LLM) + W v``, with ``v`` the visual
            token(s), so the AU scores need not pass through the LLM alone. This departs from
            AU-LLM (whose head reads the LLM's hidden state only); off by default, an option
            for comparison. No effect with ``reader: none`` (the head reads the token itself).
        explain: The LLM also learns to describe each clip's annotation (VL-FAU; any head; needs
            an LLM): trained with weight ``train.explain_weight``, decoded as ``generation``
            says.
        vision_head: A second linear AU head on the visual token(s) beside the head on the
            reader's output, trained with weight ``train.vision_weight`` (and alone in the first
            stage of ``train.stage_epochs``); its scores are reported beside the main head's
            (``AUxx_prob_vision``).
        au_queries: After the visual token(s), one text segment per AU (``AU1 inner brow
            raiser:``, from the FACS table) and AU ``i``'s score read from the hidden state at
            the end of its segment by row ``i`` of the head (an LLM reader only).
        head_norm: Standardise what the AU head reads, dimension by dimension (a BatchNorm
            without affine parameters, as before a linear probe): a pretrained LLM's last state
            has a few near-constant dimensions many times larger than the rest, which a linear
            head weighs as much as the others. Off by default (AU-LLM's head reads the state
            as it is).
    """

    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    projector: ProjectorConfig = field(default_factory=ProjectorConfig)
    llm: LLMConfig = field(default_factory=LLMConfig)
    head: str = "linear"
    text: TextConfig = field(default_factory=TextConfig)
    skip_head: bool = False
    explain: bool = False
    reader: str = "llm"
    reader_seed: int = 0
    vision_head: bool = False
    au_queries: bool = False
    head_norm: bool = False

    def __post_init__(self) -> None:
        check_choice("model", "head", self.head, Head)
        check_choice("model", "reader", self.reader, READERS)
        needs_llm = {
            f"model.head = {self.head!r}": self.has_text_head,
            "model.explain": self.explain,
            "model.au_queries": self.au_queries,
            f"model.llm.readout = {self.llm.readout!r}": self.llm.readout != "last",
            f"model.llm.tuning = {self.llm.tuning!r}": self.llm.tuning != "lora",
        }
        for what, wanted in needs_llm.items():
            if wanted and not self.has_llm:
                raise ConfigError(
                    f"{what} needs an LLM reader (model.reader: {', '.join(LLM_READERS)}), "
                    f"not model.reader = {self.reader!r}"
                )
        if self.projector.tokens == "cells":
            grid = self.backbone.mid_pool
            cells = grid[0] * grid[1] * grid[2] if grid else 0
            if cells != self.llm.n_visual_tokens:
                raise ConfigError(
                    f"model.projector.tokens = cells: model.backbone.mid_pool = {grid} gives "
                    f"{cells} cell(s) but model.llm.n_visual_tokens = {self.llm.n_visual_tokens}; "
                    "set mid_pool [T, H, W] with T * H * W visual tokens"
                )

    @property
    def has_llm(self) -> bool:
        """Whether the reader runs the configured LLM's decoder (``model.reader``)."""
        return self.reader in LLM_READERS

    @property
    def reads_prompt(self) -> bool:
        """Whether the reader reads the prompt's token embeddings (an LLM or attention reader)."""
        return self.reader in PROMPT_READERS

    @property
    def has_text_head(self) -> bool:
        """Whether the LLM answers in words (``head: text`` or ``both``)."""
        return self.head != "linear"
