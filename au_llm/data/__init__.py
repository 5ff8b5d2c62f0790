"""Dataset manifests: the datasets' label files and user tables turned into clean clip lists."""
