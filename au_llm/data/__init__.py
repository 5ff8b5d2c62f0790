"""Dataset manifests: CASME II / SAMM spreadsheets and user tables turned into clean clip lists."""
