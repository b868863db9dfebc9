"""The fal endpoints Stefna knows: each one's input schema and output shape.

Inputs follow fal's published schema for the endpoint, because fal silently ignores
keys it does not know: a misspelt parameter would simply do nothing. Outputs come
as `{"image": {...}}` (fal-ai/ghiblify) or `{"images": [...]}` (most others); the
reader accepts both for every endpoint.

Where an endpoint's schema has `enable_safety_checker`, it is locked to true (CONTRACT):
no preset can turn fal's safety checker off. Its verdict, `has_nsfw_concepts`, is read per
image (`read_result`); a flagged image is never stored.

`fal-ai/flux-general/image-to-image` (the studio) has three locked values from the
design documents. The documents call the first `image_strength` and list loras as
plain strings; fal's schema names it `strength` and takes `{"path", "scale"}`
objects, so that is what we send (see CONTRACT.md).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, cast

GHIBLIFY = "fal-ai/ghiblify"
REALISTIC_VISION = "fal-ai/realistic-vision"
FAST_SDXL_I2I = "fal-ai/fast-sdxl/image-to-image"
FLUX_GENERAL_I2I = "fal-ai/flux-general/image-to-image"

# The design documents' fallback order: Ghiblify → Realistic Vision → Fast SDXL.
DEFAULT_CHAIN = [GHIBLIFY, REALISTIC_VISION, FAST_SDXL_I2I]


class ModelConfigError(ValueError):
    """A preset's model configuration is not acceptable. `field` names the preset field."""

    def __init__(self, message: str, *, field: str) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


@dataclass(frozen=True)
class Param:
    kind: type | tuple[type, ...]
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple[Any, ...] | None = None

    def check(self, name: str, value: Any) -> None:
        kinds = self.kind if isinstance(self.kind, tuple) else (self.kind,)
        # bool is an int in Python; a True where a number belongs is still a mistake.
        if isinstance(value, bool) and bool not in kinds:
            raise ModelConfigError(f"{name} must be a {_kind_names(kinds)}, not true/false.", field="parameters")
        if not isinstance(value, kinds):
            raise ModelConfigError(f"{name} must be a {_kind_names(kinds)}.", field="parameters")
        if self.choices is not None and value not in self.choices:
            raise ModelConfigError(f"{name} must be one of {', '.join(map(str, self.choices))}.", field="parameters")
        number = cast(float, value)  # a number here: the kind check above passed
        if self.minimum is not None and number < self.minimum:
            raise ModelConfigError(f"{name} must be at least {self.minimum}.", field="parameters")
        if self.maximum is not None and number > self.maximum:
            raise ModelConfigError(f"{name} must be at most {self.maximum}.", field="parameters")


def _kind_names(kinds: tuple[type, ...]) -> str:
    names = {int: "whole number", float: "number", str: "text", bool: "true/false value"}
    return " or ".join(names.get(kind, kind.__name__) for kind in kinds)


NUMBER = (int, float)
IMAGE_SIZES = ("square_hd", "square", "portrait_4_3", "portrait_16_9", "landscape_4_3", "landscape_16_9")


@dataclass(frozen=True)
class OutputImage:
    url: str
    width: int | None = None
    height: int | None = None
    content_type: str = ""


class MalformedResult(ValueError):
    """fal's result cannot be read safely (e.g. the safety flags don't match the images)."""


@dataclass(frozen=True)
class Result:
    images: list[OutputImage]
    flagged: list[bool]  # one per image: fal's safety checker withheld it

    @property
    def clean(self) -> list[tuple[int, OutputImage]]:
        """The images to keep, with their position in fal's answer."""
        return [(index, image) for index, (image, flagged) in enumerate(zip(self.images, self.flagged, strict=True))
                if not flagged]  # fmt: skip

    @property
    def blocked(self) -> int:
        return sum(self.flagged)


@dataclass(frozen=True)
class ModelSpec:
    endpoint: str
    label: str
    takes_image: bool
    takes_prompt: bool
    max_images: int = 1
    supports_loras: bool = False
    params: dict[str, Param] = field(default_factory=dict)
    locked: dict[str, Any] = field(default_factory=dict)
    defaults: dict[str, Any] = field(default_factory=dict)

    def check_parameters(self, parameters: dict[str, Any]) -> None:
        for name, value in parameters.items():
            if name in self.locked:
                if value != self.locked[name]:
                    raise ModelConfigError(
                        f"{name} is locked to {self.locked[name]} for {self.endpoint}; it cannot be changed.",
                        field="parameters",
                    )
                continue
            if name in self.params:
                self.params[name].check(name, value)

    def knows(self, name: str) -> bool:
        return name in self.params or name in self.locked

    def build_input(
        self,
        *,
        prompt: str,
        image_url: str,
        num_images: int,
        parameters: dict[str, Any],
        loras: list[dict[str, Any]],
    ) -> dict[str, Any]:
        """The JSON body fal receives. Only keys this endpoint's schema defines are sent."""
        payload: dict[str, Any] = {}
        if self.takes_prompt:
            payload["prompt"] = prompt
        if self.takes_image:
            payload["image_url"] = image_url
        payload.update(self.defaults)
        payload.update({name: value for name, value in parameters.items() if name in self.params})
        if self.max_images > 1:
            payload["num_images"] = max(1, min(num_images, self.max_images))
        if self.supports_loras and loras:
            payload["loras"] = [{"path": lora["path"], "scale": float(lora.get("scale", 1.0))} for lora in loras]
        # Locked values last: nothing a preset says can override them.
        payload.update(self.locked)
        return payload

    @staticmethod
    def read_result(data: Any) -> Result:
        """The images in a fal result and the safety checker's verdict on each.

        Raises MalformedResult when `has_nsfw_concepts` is there but is not one true/false
        per image: then nobody can say which image is safe to show, so none is kept.
        """
        images = ModelSpec.read_output(data)
        flags = data.get("has_nsfw_concepts") if isinstance(data, dict) else None
        if flags is None:
            return Result(images, [False] * len(images))
        if (
            not isinstance(flags, list)
            or len(flags) != len(images)
            or not all(isinstance(flag, bool) for flag in flags)
        ):
            raise MalformedResult("the safety checker's answer does not match the images")
        return Result(images, flags)

    @staticmethod
    def read_output(data: Any) -> list[OutputImage]:
        """The images in a fal result, whichever of the two shapes it has."""
        if not isinstance(data, dict):
            return []
        raw = data.get("images")
        if raw is None and data.get("image") is not None:
            raw = [data["image"]]
        images = []
        for item in raw or []:
            if isinstance(item, str):
                images.append(OutputImage(url=item))
            elif isinstance(item, dict) and isinstance(item.get("url"), str) and item["url"]:
                images.append(
                    OutputImage(
                        url=item["url"],
                        width=_int_or_none(item.get("width")),
                        height=_int_or_none(item.get("height")),
                        content_type=str(item.get("content_type") or ""),
                    )
                )
        return images


def _int_or_none(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


_SD_PARAMS = {
    "negative_prompt": Param(str),
    "num_inference_steps": Param(int, 1, 65),
    "guidance_scale": Param(NUMBER, 0, 20),
    "seed": Param(int, 0),
    "image_size": Param(str, choices=IMAGE_SIZES),
}
SAFETY_CHECKER = {"enable_safety_checker": True}

MODELS: dict[str, ModelSpec] = {
    GHIBLIFY: ModelSpec(
        endpoint=GHIBLIFY,
        label="Ghiblify",
        takes_image=True,
        takes_prompt=False,
        params={"seed": Param(int, 0)},
        locked=SAFETY_CHECKER,
    ),
    REALISTIC_VISION: ModelSpec(
        # fal offers Realistic Vision as text-to-image only: it works from the prompt.
        endpoint=REALISTIC_VISION,
        label="Realistic Vision",
        takes_image=False,
        takes_prompt=True,
        max_images=4,
        params={**_SD_PARAMS, "expand_prompt": Param(bool)},
        locked=SAFETY_CHECKER,
    ),
    FAST_SDXL_I2I: ModelSpec(
        endpoint=FAST_SDXL_I2I,
        label="Fast SDXL (image-to-image)",
        takes_image=True,
        takes_prompt=True,
        max_images=4,
        supports_loras=True,
        params={**_SD_PARAMS, "strength": Param(NUMBER, 0.05, 1.0)},
        locked=SAFETY_CHECKER,
    ),
    FLUX_GENERAL_I2I: ModelSpec(
        endpoint=FLUX_GENERAL_I2I,
        label="FLUX general (image-to-image)",
        takes_image=True,
        takes_prompt=True,
        max_images=4,
        supports_loras=True,
        params={
            "seed": Param(int, 0),
            "image_size": Param(str, choices=IMAGE_SIZES),
        },
        locked={"strength": 0.5, "num_inference_steps": 7, "guidance_scale": 3.5, **SAFETY_CHECKER},
    ),
}


def get_model(endpoint: str) -> ModelSpec:
    try:
        return MODELS[endpoint]
    except KeyError:
        raise ModelConfigError(
            f"Unknown model endpoint {endpoint!r}. Known endpoints: {', '.join(sorted(MODELS))}.",
            field="model_chain",
        ) from None


def chain_needs_image(chain: list[str]) -> bool:
    """Whether a model chain transforms a photo: its first model decides what the style is.

    A chain led by a text-to-image model (say, Realistic Vision) makes its picture from the
    prompt; a photo is optional, used only by image models further down. An unknown
    endpoint counts as needing one, the safe side: asking for a photo never sends a
    request fal cannot run.
    """
    if not chain:
        return True
    spec = MODELS.get(chain[0])
    return spec is None or spec.takes_image


def chain_without_image(chain: list[str]) -> list[str]:
    """The models of a chain that can run with no photo at all, in the chain's order.

    A generation started without a photo copies this chain instead of the preset's, so a
    fallback never reaches a model that would be sent an empty image.
    """
    return [endpoint for endpoint in chain if endpoint in MODELS and not MODELS[endpoint].takes_image]


def validate_model_config(
    *,
    model_chain: Any,
    parameters: Any,
    loras: Any,
    num_images: int,
) -> None:
    """Check a preset's model settings against the registry; raise ModelConfigError naming the field."""
    if not isinstance(model_chain, list) or not model_chain:
        raise ModelConfigError("List at least one model endpoint.", field="model_chain")
    specs = []
    for endpoint in model_chain:
        if not isinstance(endpoint, str):
            raise ModelConfigError("Model endpoints must be strings.", field="model_chain")
        specs.append(get_model(endpoint))
    if not isinstance(parameters, dict):
        raise ModelConfigError("Parameters must be a JSON object.", field="parameters")
    for name in parameters:
        if not any(spec.knows(name) for spec in specs):
            raise ModelConfigError(f"No model in the chain accepts a parameter called {name!r}.", field="parameters")
    for spec in specs:
        spec.check_parameters(parameters)
    if not isinstance(loras, list):
        raise ModelConfigError('LoRAs must be a list of {"path": …, "scale": …}.', field="loras")
    for lora in loras:
        if not isinstance(lora, dict) or not isinstance(lora.get("path"), str) or not lora["path"].strip():
            raise ModelConfigError('Each LoRA needs a "path" (a URL or Hugging Face id).', field="loras")
        scale = lora.get("scale", 1.0)
        if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not 0 <= scale <= 4:
            raise ModelConfigError("A LoRA scale must be a number between 0 and 4.", field="loras")
        if set(lora) - {"path", "scale"}:
            raise ModelConfigError('A LoRA takes only "path" and "scale".', field="loras")
    if loras and not any(spec.supports_loras for spec in specs):
        raise ModelConfigError("No model in the chain accepts LoRAs.", field="loras")
    if not 1 <= num_images <= max(spec.max_images for spec in specs):
        raise ModelConfigError(
            f"This chain can make between 1 and {max(spec.max_images for spec in specs)} images.", field="num_images"
        )
