"""Seed the default presets from the design documents.

Idempotent (update_or_create by slug) and reversible (removes exactly these slugs).
The endpoint ids are literal copies, not imports: a migration must keep meaning what
it meant when it was written, whatever generation/registry.py says later.

fal-ai/fast-sdxl/image-to-image defaults to strength 0.95, which all but ignores the
photo, so every chain that reaches it sets a strength. fal-ai/flux-general/image-to-image
has its strength locked (0.5), so the two are not mixed in one chain: a preset could not
set one model's strength without changing the other's locked value.
"""

from django.db import migrations

GHIBLIFY = "fal-ai/ghiblify"
REALISTIC_VISION = "fal-ai/realistic-vision"
FAST_SDXL_I2I = "fal-ai/fast-sdxl/image-to-image"
FLUX_GENERAL_I2I = "fal-ai/flux-general/image-to-image"
# The design documents' fallback order for Ghibli reactions.
DEFAULT_CHAIN = [GHIBLIFY, REALISTIC_VISION, FAST_SDXL_I2I]

NEGATIVE_ART = "photorealistic, 3d render, deformed face, extra fingers, blurry, lowres, text, watermark, signature"
NEGATIVE_PHOTO = "cartoon, painting, illustration, deformed face, extra fingers, blurry, lowres, text, watermark"

GHIBLI = {"strength": 0.65, "negative_prompt": NEGATIVE_ART, "guidance_scale": 7.0}
EMOTION = {"strength": 0.5, "negative_prompt": NEGATIVE_ART, "guidance_scale": 7.5, "num_inference_steps": 30}
GLITCH = {"strength": 0.7, "negative_prompt": "blurry, lowres, deformed face, text, watermark", "guidance_scale": 8.0}


def _preset(slug, name, kind, sort_order, description, prompt, chain, parameters=None, **extra):
    return {
        "slug": slug,
        "name": name,
        "kind": kind,
        "sort_order": sort_order,
        "description": description,
        "prompt": prompt,
        "model_chain": list(chain),
        "parameters": dict(parameters or {}),
        "loras": [],
        "num_images": extra.get("num_images", 1),
        "requires_prompt": extra.get("requires_prompt", False),
        "is_active": True,
    }


PRESETS = [
    # --- Ghibli reactions: Ghiblify first, per the design documents ------------------
    _preset(
        "ghibli_tears",
        "Ghibli tears",
        "ghibli_reaction",
        10,
        "You, hand-drawn in Studio Ghibli style, eyes brimming with big glistening tears.",
        "Studio Ghibli style hand-drawn anime portrait of the person in the photo, same face and hairstyle, "
        "large eyes brimming with glistening tears rolling down flushed cheeks, trembling lower lip, "
        "soft watercolor sky with drifting summer clouds behind, warm gentle afternoon light, clean cel shading, "
        "Hayao Miyazaki film still",
        DEFAULT_CHAIN,
        GHIBLI,
    ),
    _preset(
        "ghibli_shock",
        "Ghibli shock",
        "ghibli_reaction",
        20,
        "Wide-eyed Ghibli astonishment: a gasp, hair lifted by a sudden gust, sparkling air.",
        "Studio Ghibli style hand-drawn anime portrait of the person in the photo, same face and hairstyle, "
        "wide astonished eyes with tiny pupils, mouth open in a gasp, eyebrows raised high, "
        "hair and clothes lifted by a sudden gust of wind, leaves swirling past, dramatic blue sky, "
        "clean cel shading, Hayao Miyazaki film still",
        DEFAULT_CHAIN,
        GHIBLI,
    ),
    _preset(
        "ghibli_sparkle",
        "Ghibli sparkle",
        "ghibli_reaction",
        30,
        "Pure Ghibli delight: starry eyes, rosy cheeks and sparkles floating in golden light.",
        "Studio Ghibli style hand-drawn anime portrait of the person in the photo, same face and hairstyle, "
        "delighted smile, eyes shining with little stars, rosy blushing cheeks, "
        "tiny sparkles and cherry blossom petals floating in golden hour light, lush green meadow behind, "
        "clean cel shading, Hayao Miyazaki film still",
        DEFAULT_CHAIN,
        GHIBLI,
    ),
    # --- Emotion masks: the face becomes a painted mask of one emotion ----------------
    _preset(
        "emotion_joy",
        "Joy mask",
        "emotion_mask",
        40,
        "Your face as a radiant mask of joy: sunflower gold, laughter lines, confetti light.",
        "portrait of the person in the photo, same face and pose, their face painted as a radiant festival mask "
        "of joy, sunflower yellow and warm orange brush strokes around the eyes, gold leaf laughter lines, "
        "beaming smile, confetti of light in the background, vivid expressive painting",
        [FAST_SDXL_I2I],
        EMOTION,
    ),
    _preset(
        "emotion_sadness",
        "Sorrow mask",
        "emotion_mask",
        50,
        "A quiet mask of sorrow: indigo washes, silver tear lines, soft rain.",
        "portrait of the person in the photo, same face and pose, their face painted as a melancholic mask of "
        "sorrow, deep indigo and slate blue watercolor washes, thin silver tear lines from the eyes, "
        "downcast gaze, soft rain streaks in a misty background, expressive fine-art painting",
        [FAST_SDXL_I2I],
        EMOTION,
    ),
    _preset(
        "emotion_anger",
        "Rage mask",
        "emotion_mask",
        60,
        "A fierce mask of rage: crimson war paint, cracked-ember patterns, smoke.",
        "portrait of the person in the photo, same face and pose, their face painted as a fierce mask of rage, "
        "crimson and black war paint, glowing cracked-ember patterns across the cheeks, furrowed brow, "
        "clenched jaw, drifting smoke and sparks behind, dramatic rim lighting, bold expressive painting",
        [FAST_SDXL_I2I],
        EMOTION,
    ),
    _preset(
        "emotion_surprise",
        "Wonder mask",
        "emotion_mask",
        70,
        "A mask of wonder: starburst patterns, wide eyes, electric violet and teal.",
        "portrait of the person in the photo, same face and pose, their face painted as a mask of wonder and "
        "surprise, starburst patterns radiating from wide open eyes, electric violet and teal pigments, "
        "raised eyebrows, open mouth, glittering cosmic dust in the background, vivid expressive painting",
        [FAST_SDXL_I2I],
        EMOTION,
    ),
    _preset(
        "emotion_fear",
        "Dread mask",
        "emotion_mask",
        80,
        "A haunting mask of dread: pale chalk, shadowed eyes, candle-lit gloom.",
        "portrait of the person in the photo, same face and pose, their face painted as a haunting mask of "
        "dread, pale chalk white base, deep shadowed eye sockets, thin dark veins of ink, wide fearful eyes, "
        "flickering candle light in a gloomy background, chiaroscuro fine-art painting",
        [FAST_SDXL_I2I],
        EMOTION,
    ),
    # --- Neo glitch: the photo pushed through a broken future ------------------------
    _preset(
        "neo_glitch_cyberpunk",
        "Neon cyberpunk",
        "neo_glitch",
        90,
        "Night-city cyberpunk: magenta and cyan neon, rain, holographic signs.",
        "the person in the photo as a cyberpunk character on a rain-soaked night street, same face, "
        "magenta and cyan neon rim light, holographic kanji signs, wet reflections, "
        "subtle chromatic aberration and scanline glitches, cinematic, highly detailed",
        [FAST_SDXL_I2I],
        GLITCH,
    ),
    _preset(
        "neo_glitch_datamosh",
        "Datamosh",
        "neo_glitch",
        100,
        "Corrupted-video look: pixel sorting, RGB split and smeared macroblocks.",
        "the person in the photo rendered as a corrupted digital video frame, same face, heavy datamosh, "
        "pixel sorting streaks, RGB channel split, smeared compression macroblocks, VHS tracking noise, "
        "saturated electric colors, glitch art",
        [FAST_SDXL_I2I],
        GLITCH,
    ),
    _preset(
        "neo_glitch_vaporwave",
        "Vaporwave",
        "neo_glitch",
        110,
        "Retro vaporwave: pastel pink and teal, chrome grid sunset, 80s scanlines.",
        "the person in the photo in a vaporwave dreamscape, same face, pastel pink and teal palette, "
        "chrome wireframe grid, setting retro sun with stripes, marble statue fragments, "
        "80s CRT scanlines and glitch bands, dreamy haze",
        [FAST_SDXL_I2I],
        GLITCH,
    ),
    _preset(
        "neo_glitch_hologram",
        "Hologram",
        "neo_glitch",
        120,
        "You as a flickering blue hologram, projected in a dark sci-fi lab.",
        "the person in the photo as a translucent blue hologram projection, same face, glowing cyan scan lines, "
        "flickering interference bands, floating data particles, dark sci-fi laboratory background, "
        "volumetric light, futuristic glitch effect",
        [FAST_SDXL_I2I],
        GLITCH,
    ),
    # --- General presets ------------------------------------------------------------
    _preset(
        "realistic",
        "Realistic",
        "preset",
        130,
        "A photorealistic picture made from your description (Realistic Vision works from text).",
        "RAW photo, {prompt}, natural skin texture, soft window light, 85mm lens, shallow depth of field, "
        "subtle film grain, highly detailed, sharp focus",
        [REALISTIC_VISION, FAST_SDXL_I2I],
        {"strength": 0.55, "negative_prompt": NEGATIVE_PHOTO, "guidance_scale": 6.0, "num_inference_steps": 35},
        requires_prompt=True,
    ),
    _preset(
        "high_quality",
        "High quality",
        "preset",
        140,
        "Your photo, cleaned up: crisper detail, richer color, studio-grade light.",
        "high quality professional photograph of the same scene, crisp focus, fine detail, rich natural color, "
        "balanced studio lighting, clean background, 8k",
        [FAST_SDXL_I2I],
        {"strength": 0.35, "negative_prompt": NEGATIVE_PHOTO, "guidance_scale": 7.0, "num_inference_steps": 40},
    ),
    _preset(
        "oil_painting",
        "Oil painting",
        "preset",
        150,
        "A classical oil portrait: thick brushwork, warm varnish, museum lighting.",
        "classical oil painting of the photo, same composition and faces, thick impasto brushwork, "
        "warm umber and ochre palette, old master chiaroscuro, varnished canvas texture, museum lighting",
        [FAST_SDXL_I2I],
        {"strength": 0.6, "negative_prompt": NEGATIVE_ART, "guidance_scale": 7.5},
    ),
    _preset(
        "watercolor",
        "Watercolor",
        "preset",
        160,
        "Loose watercolor: soft bleeding pigments on textured paper.",
        "delicate watercolor painting of the photo, same composition, loose wet-on-wet washes, "
        "soft bleeding pigments, visible cold-press paper texture, white paper highlights, light pencil underdrawing",
        [FAST_SDXL_I2I],
        {"strength": 0.6, "negative_prompt": NEGATIVE_ART, "guidance_scale": 7.5},
    ),
    _preset(
        "pencil_sketch",
        "Pencil sketch",
        "preset",
        170,
        "A graphite sketch with cross-hatching, like a page from an artist's notebook.",
        "detailed graphite pencil sketch of the photo, same composition, confident contour lines, "
        "cross-hatched shading, smudged soft shadows, off-white sketchbook paper, monochrome",
        [FAST_SDXL_I2I],
        {"strength": 0.6, "negative_prompt": "color, photorealistic, blurry, text, watermark", "guidance_scale": 7.5},
    ),
    _preset(
        "vintage_film",
        "Vintage film",
        "preset",
        180,
        "A 1970s film photo: faded Kodachrome color, grain and a warm light leak.",
        "1970s vintage film photograph of the same scene, faded Kodachrome colors, warm light leak, "
        "soft halation, visible film grain, slightly lifted blacks, nostalgic mood",
        [FAST_SDXL_I2I],
        {"strength": 0.4, "negative_prompt": "digital, oversharpened, text, watermark", "guidance_scale": 6.5},
    ),
    _preset(
        "cartoon_3d",
        "3D cartoon",
        "preset",
        190,
        "An animated-movie 3D character with big expressive eyes and soft studio light.",
        "the person in the photo as a 3D animated movie character, same hairstyle and clothing, "
        "big expressive eyes, smooth stylized skin, soft subsurface scattering, colorful studio lighting, "
        "clean pastel background, octane render",
        [FAST_SDXL_I2I],
        {"strength": 0.65, "negative_prompt": "photo, realistic skin pores, deformed, text, watermark"},
    ),
    # --- Free prompts ---------------------------------------------------------------
    _preset(
        "custom_prompt",
        "Custom prompt",
        "custom_prompt",
        200,
        "Describe the style yourself: your prompt is sent exactly as you write it.",
        "{prompt}",
        [FAST_SDXL_I2I],
        {"strength": 0.7},
        requires_prompt=True,
    ),
    _preset(
        "image_to_image",
        "Image-to-image studio",
        "image_to_image",
        210,
        "The studio: FLUX reworks your photo from your prompt and returns two takes.",
        "{prompt}",
        [FLUX_GENERAL_I2I],
        {},
        requires_prompt=True,
        num_images=2,
    ),
]


def seed(apps, schema_editor):
    Preset = apps.get_model("presets", "Preset")
    for data in PRESETS:
        defaults = {key: value for key, value in data.items() if key != "slug"}
        Preset.objects.update_or_create(slug=data["slug"], defaults=defaults)


def unseed(apps, schema_editor):
    Preset = apps.get_model("presets", "Preset")
    Preset.objects.filter(slug__in=[data["slug"] for data in PRESETS]).delete()


class Migration(migrations.Migration):
    dependencies = [("presets", "0001_initial")]

    operations = [migrations.RunPython(seed, unseed)]
