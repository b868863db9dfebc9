// Stefna's small progressive enhancements. No inline script: CSP forbids it.
