import os

from au_llm.preprocess.native import quiet_native_stderr, with_native_reason


def test_native_chatter_is_dropped_and_other_stderr_passed_on(capfd) -> None:
    with quiet_native_stderr():
        os.write(2, b"WARNING: Logging before InitGoogle() is written to STDERR\n")
        os.write(2, b"W0000 00:00:1795474924.951737    3305 face_landmarker_graph.cc:181] x\n")
        os.write(2, b"INFO: Created TensorFlow Lite XNNPACK delegate for CPU.\n")
        os.write(2, b"E0000 00:00:1.0  12 graph.cc:9] the model file is broken\n")
    assert capfd.readouterr().err == "E0000 00:00:1.0  12 graph.cc:9] the model file is broken\n"


def test_a_native_reason_follows_the_exception_message() -> None:
    lines = ["[mov @ 0x1] moov atom not found", " ERROR opening: a.mp4, Invalid data "]
    reason = with_native_reason(RuntimeError("Error reading a.mp4..."), lines)
    expected = "Error reading a.mp4... ([mov @ 0x1] moov atom not found; ERROR opening: a.mp4, "
    assert reason == expected + "Invalid data)"
    assert with_native_reason(RuntimeError("plain"), []) == "plain"
