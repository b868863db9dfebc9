# Bahasa Indonesia as its readers write it (PUEBI): "7 Des 2026", "pukul 14.05".
# Django's "j N Y" gives "7 Des. 2026" beside "9 Maret 2026": its AP-style abbreviations
# carry a full stop and only some months are shortened. "M" is the plain three letters.
DATE_FORMAT = "j M Y"
DATETIME_FORMAT = "j M Y, H.i"
# Django's "G.i" drops the leading zero ("9.05"); a clock time keeps two digits.
TIME_FORMAT = "H.i"
SHORT_DATETIME_FORMAT = "d-m-Y H.i"
