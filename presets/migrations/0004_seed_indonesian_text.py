"""Bahasa Indonesia names and descriptions for the seeded presets.

Fills only empty fields, so text staff have already written in the admin is kept;
reversing empties only the text this migration wrote.
"""

from django.db import migrations

# slug: (name, description)
INDONESIAN = {
    "ghibli_tears": (
        "Ghibli haru",
        "Kamu digambar tangan ala Studio Ghibli, dengan mata berkaca-kaca dan air mata yang berkilau.",
    ),
    "ghibli_shock": (
        "Ghibli kaget",
        "Terkejut khas Ghibli: mata terbelalak, rambut tersibak embusan angin, udara berkilauan.",
    ),
    "ghibli_sparkle": (
        "Ghibli berbinar",
        "Bahagia ala Ghibli: mata berbinar, pipi merona, dan kilau yang melayang dalam cahaya keemasan.",
    ),
    "emotion_joy": (
        "Topeng ceria",
        "Wajahmu jadi topeng keceriaan yang bersinar: kuning bunga matahari, garis tawa, cahaya bak konfeti.",
    ),
    "emotion_sadness": (
        "Topeng duka",
        "Topeng duka yang hening: sapuan warna nila, jejak air mata keperakan, gerimis yang lembut.",
    ),
    "emotion_anger": (
        "Topeng amarah",
        "Topeng amarah yang garang: cat perang merah menyala, pola bara yang retak, kepulan asap.",
    ),
    "emotion_surprise": (
        "Topeng takjub",
        "Topeng penuh takjub: pola bintang meletup, mata membelalak, ungu elektrik dan hijau toska.",
    ),
    "emotion_fear": (
        "Topeng ngeri",
        "Topeng ngeri yang menghantui: putih kapur, mata berbayang, suasana suram diterangi lilin.",
    ),
    "neo_glitch_cyberpunk": (
        "Cyberpunk neon",
        "Cyberpunk kota malam: neon magenta dan sian, hujan, papan reklame hologram.",
    ),
    "neo_glitch_datamosh": (
        "Datamosh",
        "Efek video rusak: piksel yang tersusun acak, warna RGB terbelah, dan blok gambar yang meleleh.",
    ),
    "neo_glitch_vaporwave": (
        "Vaporwave",
        "Vaporwave retro: merah muda dan toska pastel, senja di atas grid krom, garis pindai ala 80-an.",
    ),
    "neo_glitch_hologram": (
        "Hologram",
        "Kamu sebagai hologram biru yang berkedip-kedip, terproyeksi di laboratorium fiksi ilmiah yang gelap.",
    ),
    "realistic": (
        "Realistis",
        "Gambar fotorealistis yang dibuat dari deskripsimu (Realistic Vision bekerja dari teks).",
    ),
    "high_quality": (
        "Kualitas tinggi",
        "Fotomu versi lebih bersih: detail lebih tajam, warna lebih kaya, cahaya sekelas studio.",
    ),
    "oil_painting": (
        "Lukisan cat minyak",
        "Potret cat minyak klasik: sapuan kuas yang tebal, pernis yang hangat, pencahayaan museum.",
    ),
    "watercolor": (
        "Cat air",
        "Cat air yang luwes: pigmen lembut yang saling membaur di atas kertas bertekstur.",
    ),
    "pencil_sketch": (
        "Sketsa pensil",
        "Sketsa grafit dengan arsiran silang, seperti halaman dari buku sketsa seorang seniman.",
    ),
    "vintage_film": (
        "Film jadul",
        "Foto film tahun 70-an: warna Kodachrome yang memudar, butiran film, dan semburat cahaya hangat.",
    ),
    "cartoon_3d": (
        "Kartun 3D",
        "Karakter 3D ala film animasi, dengan mata besar yang ekspresif dan cahaya studio yang lembut.",
    ),
    "custom_prompt": (
        "Prompt sendiri",
        "Tentukan sendiri gayanya: prompt-mu dikirim persis seperti yang kamu tulis.",
    ),
    "image_to_image": (
        "Studio gambar-ke-gambar",
        "Studionya: FLUX mengolah ulang fotomu sesuai prompt-mu dan memberikan dua versi.",
    ),
}


def fill(apps, schema_editor):
    Preset = apps.get_model("presets", "Preset")
    for preset in Preset.objects.filter(slug__in=INDONESIAN):
        name, description = INDONESIAN[preset.slug]
        changed = []
        if not preset.name_id:
            preset.name_id = name
            changed.append("name_id")
        if not preset.description_id:
            preset.description_id = description
            changed.append("description_id")
        if changed:
            preset.save(update_fields=changed)


def empty(apps, schema_editor):
    Preset = apps.get_model("presets", "Preset")
    for slug, (name, description) in INDONESIAN.items():
        Preset.objects.filter(slug=slug, name_id=name).update(name_id="")
        Preset.objects.filter(slug=slug, description_id=description).update(description_id="")


class Migration(migrations.Migration):
    dependencies = [("presets", "0003_preset_indonesian_text")]

    operations = [migrations.RunPython(fill, empty)]
