"""Building a manifest of one kind."""

import pytest

from au_llm.data.build import build_manifest
from au_llm.data.manifest import ManifestError


def test_build_manifest_dispatches(table, casme2):
    assert len(build_manifest("csv", table=table).frame) == 2
    assert len(build_manifest("CASME2", root=casme2[0], coding=casme2[1]).frame) == 4
    with pytest.raises(
        ManifestError,
        match="expected one of casme2, samm, casme, casme3, mmew, 4dme, samm-lv, casme-sq-lv, "
        "casme3-lv, csv",
    ):
        build_manifest("meb", table=table)
    with pytest.raises(ManifestError, match="needs root"):
        build_manifest("samm", coding=casme2[1])
