# Times sit beside "UTC" (the daily reset, history, the credit ledger): a 24-hour clock
# reads unambiguously there, where Django's "P" would say "2:05 p.m.".
TIME_FORMAT = "H:i"
