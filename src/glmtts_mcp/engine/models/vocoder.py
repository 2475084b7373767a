"""HiFT vocoder (24 kHz): mel -> F0 -> harmonic source -> neural source-filter -> iSTFT waveform.

Read beside upstream `cosyvoice/hifigan_cosy2/generator.py` (HiFTGenerator, SourceModuleHnNSF2,
SineGen2, ResBlock), `f0_predictor.py` (ConvRNNF0Predictor) and `utils/hift_util.py` (the
CosyVoice2 parameter set). Module and parameter names follow the checkpoint's state-dict keys.
Weight norm is folded into plain weights at load time: this module only does inference.
Run it in float32 (it is small): the frame-rate phase integration and the iSTFT need the precision.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

# The real model: utils/hift_util.HiFTInference._build_model ("CosyVoice 2.0 parameters"),
# laid out like the golden cases' `config`.
HIFT_24K_CONFIG: dict = {
    "HiFTGenerator": {
        "in_channels": 80,
        "base_channels": 512,
        "nb_harmonics": 8,
        "sampling_rate": 24000,
        "nsf_alpha": 0.1,
        "nsf_sigma": 0.003,
        "nsf_voiced_threshold": 10,
        "upsample_rates": [8, 5, 3],
        "upsample_kernel_sizes": [16, 11, 7],
        "istft_params": {"n_fft": 16, "hop_len": 4},
        "resblock_kernel_sizes": [3, 7, 11],
        "resblock_dilation_sizes": [[1, 3, 5], [1, 3, 5], [1, 3, 5]],
        "source_resblock_kernel_sizes": [7, 7, 11],
        "source_resblock_dilation_sizes": [[1, 3, 5], [1, 3, 5], [1, 3, 5]],
        "lrelu_slope": 0.1,
        "audio_limit": 0.99,
    },
    "ConvRNNF0Predictor": {"num_class": 1, "in_channels": 80, "cond_channels": 512},
}

# Names of the recorded RNG draws in the golden io (upstream draws them from the global generator).
DRAW_RAND_INI = "rng_rand_ini"  # torch.rand(B, harmonics+1): initial phase per harmonic
DRAW_SINE_NOISE = "rng_sine_noise"  # torch.randn_like(sine_waves): additive noise (B, samples, harmonics+1)


def _padding(kernel_size: int, dilation: int = 1) -> int:
    return int((kernel_size * dilation - dilation) / 2)


class Snake(nn.Module):
    """x + sin²(αx)/α with a per-channel α on the linear scale (upstream alpha_logscale=False)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.alpha = nn.Parameter(torch.ones(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        alpha = self.alpha[None, :, None]
        return x + (1.0 / (alpha + 1e-9)) * torch.sin(x * alpha).pow(2)


class ResBlock(nn.Module):
    """HiFiGAN residual block with Snake activations: per dilation, snake-conv(d)-snake-conv(1) + skip."""

    def __init__(self, channels: int, kernel_size: int, dilations: list[int]) -> None:
        super().__init__()
        self.convs1 = nn.ModuleList(
            nn.Conv1d(channels, channels, kernel_size, 1, dilation=d, padding=_padding(kernel_size, d))
            for d in dilations
        )
        self.convs2 = nn.ModuleList(
            nn.Conv1d(channels, channels, kernel_size, 1, dilation=1, padding=_padding(kernel_size)) for _ in dilations
        )
        self.activations1 = nn.ModuleList(Snake(channels) for _ in dilations)
        self.activations2 = nn.ModuleList(Snake(channels) for _ in dilations)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for act1, conv1, act2, conv2 in zip(
            self.activations1, self.convs1, self.activations2, self.convs2, strict=True
        ):
            x = conv2(act2(conv1(act1(x)))) + x
        return x


class ConvRNNF0Predictor(nn.Module):
    """Five k3 convs with ELU, then a linear head; |output| is F0 in Hz per mel frame."""

    def __init__(self, num_class: int = 1, in_channels: int = 80, cond_channels: int = 512) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for i in range(5):
            layers += [nn.Conv1d(in_channels if i == 0 else cond_channels, cond_channels, 3, padding=1), nn.ELU()]
        self.condnet = nn.Sequential(*layers)
        self.classifier = nn.Linear(cond_channels, num_class)

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        """mel [B, 80, T] -> f0 [B, T]."""
        return torch.abs(self.classifier(self.condnet(mel).transpose(1, 2)).squeeze(-1))


@dataclass(frozen=True)
class SineParams:
    sampling_rate: int
    upsample_scale: int
    harmonic_num: int
    sine_amp: float
    noise_std: float
    voiced_threshold: float


class SourceModuleHnNSF2(nn.Module):
    """Harmonic-plus-noise excitation (SineGen2 phase path) merged to one channel by linear + tanh.

    The phase is integrated at frame rate (linear down-sampling of the per-sample phase increments
    by the upsample scale, cumsum, linear up-sampling), which is what makes it SineGen2.
    """

    def __init__(self, params: SineParams) -> None:
        super().__init__()
        self.params = params
        self.l_linear = nn.Linear(params.harmonic_num + 1, 1)

    def forward(self, f0: torch.Tensor, rand_ini: torch.Tensor, sine_noise: torch.Tensor) -> torch.Tensor:
        """f0 [B, L, 1] (per sample, Hz), rand_ini [B, H+1], sine_noise [B, L, H+1] -> source [B, L, 1]."""
        p = self.params
        harmonics = torch.arange(1, p.harmonic_num + 2, device=f0.device, dtype=f0.dtype)
        rad = (f0 * harmonics / p.sampling_rate) % 1
        initial_phase = rand_ini.clone()
        initial_phase[:, 0] = 0  # the fundamental starts at phase 0
        rad[:, 0, :] = rad[:, 0, :] + initial_phase
        rad = F.interpolate(rad.transpose(1, 2), scale_factor=1 / p.upsample_scale, mode="linear").transpose(1, 2)
        phase = torch.cumsum(rad, dim=1) * 2 * math.pi
        phase = F.interpolate(
            phase.transpose(1, 2) * p.upsample_scale, scale_factor=p.upsample_scale, mode="linear"
        ).transpose(1, 2)
        sines = torch.sin(phase) * p.sine_amp
        uv = (f0 > p.voiced_threshold).to(f0.dtype)
        # unvoiced samples get noise of about the sine's amplitude instead of a sine
        noise_amp = uv * p.noise_std + (1 - uv) * p.sine_amp / 3
        sines = sines * uv + noise_amp * sine_noise
        return torch.tanh(self.l_linear(sines))


class HiFTGenerator(nn.Module):
    """HiFTNet generator (neural source-filter + iSTFTNet) as CosyVoice2 / GLM-TTS use it at 24 kHz."""

    stft_window: torch.Tensor

    def __init__(
        self,
        *,
        in_channels: int,
        base_channels: int,
        nb_harmonics: int,
        sampling_rate: int,
        nsf_alpha: float,
        nsf_sigma: float,
        nsf_voiced_threshold: float,
        upsample_rates: list[int],
        upsample_kernel_sizes: list[int],
        istft_params: Mapping[str, int],
        resblock_kernel_sizes: list[int],
        resblock_dilation_sizes: list[list[int]],
        source_resblock_kernel_sizes: list[int],
        source_resblock_dilation_sizes: list[list[int]],
        lrelu_slope: float,
        audio_limit: float,
        f0_predictor: ConvRNNF0Predictor,
    ) -> None:
        super().__init__()
        if sampling_rate == 22050:
            raise ValueError(
                "HiFT at 22050 Hz uses upstream's SourceModuleHnNSF/SineGen (CosyVoice 1), which GLM-TTS never "
                "uses; only the SineGen2 path (any other rate, GLM-TTS: 24000) is implemented"
            )
        self.sampling_rate = sampling_rate
        self.n_fft = int(istft_params["n_fft"])
        self.hop_len = int(istft_params["hop_len"])
        self.lrelu_slope = lrelu_slope
        self.audio_limit = audio_limit
        self.num_kernels = len(resblock_kernel_sizes)
        self.upsample_scale = math.prod(upsample_rates) * self.hop_len
        self.nb_harmonics = nb_harmonics

        self.m_source = SourceModuleHnNSF2(
            SineParams(sampling_rate, self.upsample_scale, nb_harmonics, nsf_alpha, nsf_sigma, nsf_voiced_threshold)
        )
        self.conv_pre = nn.Conv1d(in_channels, base_channels, 7, 1, padding=3)
        self.ups = nn.ModuleList(
            nn.ConvTranspose1d(base_channels // 2**i, base_channels // 2 ** (i + 1), k, u, padding=(k - u) // 2)
            for i, (u, k) in enumerate(zip(upsample_rates, upsample_kernel_sizes, strict=True))
        )
        # The source STFT (n_fft+2 channels at hop rate) is brought down to each stage's rate.
        down_rates = [1, *upsample_rates[::-1][:-1]]
        cum_rates = [math.prod(down_rates[: i + 1]) for i in range(len(down_rates))][::-1]
        self.source_downs = nn.ModuleList()
        self.source_resblocks = nn.ModuleList()
        for i, (u, k, d) in enumerate(
            zip(cum_rates, source_resblock_kernel_sizes, source_resblock_dilation_sizes, strict=True)
        ):
            ch = base_channels // 2 ** (i + 1)
            if u == 1:
                self.source_downs.append(nn.Conv1d(self.n_fft + 2, ch, 1, 1))
            else:
                self.source_downs.append(nn.Conv1d(self.n_fft + 2, ch, u * 2, u, padding=u // 2))
            self.source_resblocks.append(ResBlock(ch, k, d))
        self.resblocks = nn.ModuleList(
            ResBlock(base_channels // 2 ** (i + 1), k, d)
            for i in range(len(self.ups))
            for k, d in zip(resblock_kernel_sizes, resblock_dilation_sizes, strict=True)
        )
        self.conv_post = nn.Conv1d(base_channels // 2 ** len(self.ups), self.n_fft + 2, 7, 1, padding=3)
        self.f0_predictor = f0_predictor
        # scipy.signal.get_window("hann", n_fft, fftbins=True) is the periodic Hann window
        self.register_buffer("stft_window", torch.hann_window(self.n_fft, periodic=True), persistent=False)

    @classmethod
    def from_config(cls, cfg: Mapping) -> HiFTGenerator:
        """Build from a config laid out like the golden cases' (`HiFTGenerator`, `ConvRNNF0Predictor`)."""
        gen = copy.deepcopy(dict(cfg["HiFTGenerator"]))
        f0 = dict(cfg["ConvRNNF0Predictor"])
        predictor = ConvRNNF0Predictor(
            num_class=int(f0["num_class"]), in_channels=int(f0["in_channels"]), cond_channels=int(f0["cond_channels"])
        )
        return cls(**gen, f0_predictor=predictor)

    def _stft(self, x: torch.Tensor) -> torch.Tensor:
        """[B, L] -> real and imaginary parts stacked on channels [B, n_fft+2, L/hop+1]."""
        spec = torch.stft(
            x, self.n_fft, self.hop_len, self.n_fft, window=self.stft_window.to(x.dtype), return_complex=True
        )
        spec = torch.view_as_real(spec)
        return torch.cat([spec[..., 0], spec[..., 1]], dim=1)

    def _istft(self, magnitude: torch.Tensor, phase: torch.Tensor) -> torch.Tensor:
        magnitude = torch.clip(magnitude, max=1e2)
        spec = torch.complex(magnitude * torch.cos(phase), magnitude * torch.sin(phase))
        return torch.istft(spec, self.n_fft, self.hop_len, self.n_fft, window=self.stft_window.to(magnitude.dtype))

    def decode(self, mel: torch.Tensor, source: torch.Tensor) -> torch.Tensor:
        """mel [B, 80, T] and source [B, 1, T*scale] -> waveform [B, T*scale] clamped to ±audio_limit."""
        s_stft = self._stft(source.squeeze(1))
        x = self.conv_pre(mel)
        for i, up in enumerate(self.ups):
            x = up(F.leaky_relu(x, self.lrelu_slope))
            if i == len(self.ups) - 1:
                x = F.pad(x, (1, 0), mode="reflect")
            x = x + self.source_resblocks[i](self.source_downs[i](s_stft))
            blocks = self.resblocks[i * self.num_kernels : (i + 1) * self.num_kernels]
            xs = blocks[0](x)
            for block in blocks[1:]:
                xs = xs + block(x)
            x = xs / self.num_kernels
        x = self.conv_post(F.leaky_relu(x))  # default slope 0.01 here, as upstream
        half = self.n_fft // 2 + 1
        wav = self._istft(torch.exp(x[:, :half, :]), torch.sin(x[:, half:, :]))
        return torch.clamp(wav, -self.audio_limit, self.audio_limit)

    def _draws(
        self, batch: int, samples: int, like: torch.Tensor, generator: torch.Generator | None, draws: Mapping | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The two random tensors SineGen2 uses, recorded (exact parity with upstream) or freshly drawn.

        Drawn in upstream's order (initial phases, then noise) so a generator seeded like upstream's
        global RNG reproduces upstream's draws. Upstream's third draw (the noise branch) never reaches
        the output and is not taken. Draws happen on the generator's device, so a CPU generator
        gives the same audio on any device.
        """
        dim = self.nb_harmonics + 1
        if draws is not None:
            rand_ini, noise = draws[DRAW_RAND_INI], draws[DRAW_SINE_NOISE]
            if tuple(rand_ini.shape) != (batch, dim) or tuple(noise.shape) != (batch, samples, dim):
                raise ValueError(
                    f"recorded draws have shapes {tuple(rand_ini.shape)} and {tuple(noise.shape)}; "
                    f"expected {(batch, dim)} and {(batch, samples, dim)}"
                )
        else:
            device = generator.device if generator is not None else like.device
            rand_ini = torch.rand(batch, dim, generator=generator, device=device)
            # upstream's randn_like fills a (B, L, H+1) view of a (B, H+1, L) tensor in memory order
            noise = torch.empty(batch, dim, samples, device=device).transpose(1, 2).normal_(generator=generator)
        return rand_ini.to(like), noise.to(like)

    @torch.inference_mode()
    def inference(
        self,
        mel: torch.Tensor,
        *,
        generator: torch.Generator | None = None,
        draws: Mapping[str, torch.Tensor] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """mel [B, 80, T] -> (wav [B, T*scale], f0 [B, T], source [B, 1, T*scale]).

        `draws` (keys DRAW_RAND_INI, DRAW_SINE_NOISE) replays recorded noise for exact parity; otherwise
        noise comes from `generator` (or torch's global generator when None).
        """
        dtype = self.conv_pre.weight.dtype
        if dtype not in (torch.float32, torch.float64):
            raise ValueError(f"HiFT must run in float32 (its STFT and phase integration need it), not {dtype}")
        mel = mel.to(dtype)  # a half-precision flow's mel is accepted
        f0 = self.f0_predictor(mel)
        f0_samples = F.interpolate(f0[:, None], scale_factor=self.upsample_scale, mode="nearest").transpose(1, 2)
        rand_ini, noise = self._draws(mel.shape[0], f0_samples.shape[1], mel, generator, draws)
        source = self.m_source(f0_samples, rand_ini, noise).transpose(1, 2)
        return self.decode(mel, source), f0, source


_WEIGHT_NORM_STYLES = (
    (".parametrizations.weight.original0", ".parametrizations.weight.original1"),
    (".weight_g", ".weight_v"),
)


def fold_weight_norm(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Replace every weight-norm pair (g, v) by the plain weight g·v/‖v‖ (norm over all dims but 0).

    Accepts torch's parametrization keys (original0 = g, original1 = v) and the old weight_g/weight_v.
    For ConvTranspose1d dim 0 is the input-channel axis; the formula is the same.
    """
    out: dict[str, torch.Tensor] = {}
    pending: dict[str, dict[str, torch.Tensor]] = {}
    for key, value in state_dict.items():
        dotted = "." + key  # so a top-level module's keys match the suffixes too
        for g_suffix, v_suffix in _WEIGHT_NORM_STYLES:
            suffix = g_suffix if dotted.endswith(g_suffix) else v_suffix if dotted.endswith(v_suffix) else None
            if suffix is not None:
                base = dotted[: -len(suffix)]
                pending.setdefault(base, {})["g" if suffix == g_suffix else "v"] = value
                break
        else:
            out[key] = value
    for base, pair in pending.items():
        if set(pair) != {"g", "v"}:
            raise KeyError(f"weight-norm parameters of {base[1:]!r} are incomplete: found only {sorted(pair)}")
        g, v = pair["g"], pair["v"]
        norm = v.norm(p=2, dim=tuple(range(1, v.dim())), keepdim=True)
        out[f"{base}.weight"[1:]] = v * (g / norm)
    return out


def load_hift_state_dict(model: HiFTGenerator, state_dict: Mapping[str, torch.Tensor]) -> None:
    """Load a HiFT state dict strictly: either weight-norm key style, optional `generator.` prefix."""
    prefix = "generator."
    if state_dict and all(k.startswith(prefix) for k in state_dict):
        state_dict = {k[len(prefix) :]: v for k, v in state_dict.items()}
    plain = fold_weight_norm(state_dict)
    expected = model.state_dict()
    missing = sorted(set(expected) - set(plain))
    unexpected = sorted(set(plain) - set(expected))
    if missing or unexpected:
        raise KeyError(
            "HiFT weights do not match the model built from its config: "
            f"missing {missing[:8]}{' ...' if len(missing) > 8 else ''} ({len(missing)}), "
            f"unexpected {unexpected[:8]}{' ...' if len(unexpected) > 8 else ''} ({len(unexpected)}). "
            "Check that the file is hift.pt from the GLM-TTS checkpoint and the config's channel sizes."
        )
    bad = [f"{k} {tuple(plain[k].shape)} != {tuple(v.shape)}" for k, v in expected.items() if plain[k].shape != v.shape]
    if bad:
        raise ValueError(f"HiFT weights have wrong shapes (file vs config): {bad[:8]}")
    model.load_state_dict(plain, strict=True)
