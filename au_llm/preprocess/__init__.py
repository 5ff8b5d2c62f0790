"""Face-aligned clip preprocessing: readers, landmarks, alignment, the clip cache and datasets.

Frame folders or videos are read (:mod:`.readers`), faces are landmarked with mediapipe
(:mod:`.landmarks`) and aligned by a similarity transform to a canonical template
(:mod:`.align`); aligned clips are cached once per preprocessing setting (:mod:`.cache`) by
:func:`au_llm.preprocess.run.preprocess_manifest`, and sampled in time at load time
(:mod:`.sampling`, :mod:`.dataset`).
"""
