"""R4B validation remembered per exact JSON of a part, and UUIDs from a shared random buffer."""

from __future__ import annotations

import os
import uuid

from fhir.resources.R4B.codeableconcept import CodeableConcept
from fhir.resources.R4B.dosage import DosageDoseAndRate

from cds_service import pipeline
from cds_service.ids import new_uuid

GOOD = {"coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "6130"}]}
BAD_DOSE = {"doseQuantity": {"value": "lots", "unit": "mg"}}


def test_a_part_seen_before_gets_the_same_outcome_as_a_fresh_validation(monkeypatch):
    monkeypatch.setattr(pipeline, "_VALIDATED", {})
    assert pipeline.validation_errors(CodeableConcept, GOOD) == ()
    first = pipeline.validation_errors(DosageDoseAndRate, BAD_DOSE)
    again = pipeline.validation_errors(DosageDoseAndRate, dict(BAD_DOSE))
    assert first and again == first  # an invalid part stays invalid: still a 400
    assert first[0][0][:2] == ("doseQuantity", "value")
    assert len(pipeline._VALIDATED) == 2


def test_the_same_json_under_another_model_is_validated_for_that_model(monkeypatch):
    monkeypatch.setattr(pipeline, "_VALIDATED", {})
    assert pipeline.validation_errors(DosageDoseAndRate, {"coding": []}) != ()  # not a DoseAndRate field
    assert pipeline.validation_errors(CodeableConcept, {"coding": []}) == ()


def test_values_that_serialise_alike_are_never_remembered(monkeypatch):
    monkeypatch.setattr(pipeline, "_VALIDATED", {})
    nan = {"doseQuantity": {"value": float("nan"), "unit": "mg"}}  # orjson writes NaN as null
    none = {"doseQuantity": {"value": None, "unit": "mg"}}
    huge = {"doseQuantity": {"value": 10 ** 30, "unit": "mg"}}  # beyond orjson's 64 bits
    for value in (nan, none, huge):
        pipeline.validation_errors(DosageDoseAndRate, value)
    assert pipeline._VALIDATED == {}


def test_the_memory_is_bounded(monkeypatch):
    monkeypatch.setattr(pipeline, "_VALIDATED", {})
    monkeypatch.setattr(pipeline, "VALIDATED_MAX", 3)
    for code in range(10):
        pipeline.validation_errors(CodeableConcept, {"text": f"reason {code}"})
    assert 1 <= len(pipeline._VALIDATED) <= 3


def test_uuids_are_version_4_distinct_and_not_shared_with_a_forked_child():
    ids = {new_uuid() for _ in range(1000)}  # crosses several 4 KiB refills
    assert len(ids) == 1000
    assert all(uuid.UUID(i).version == 4 and uuid.UUID(i).variant == uuid.RFC_4122 for i in ids)
    new_uuid()  # the buffer now holds bytes a careless child would hand out again
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.write(write_end, new_uuid().encode())
        os._exit(0)
    os.close(write_end)
    os.waitpid(pid, 0)
    with os.fdopen(read_end) as pipe:
        child = pipe.read()
    parent = new_uuid()
    assert child != parent and child not in ids


def test_uuids_from_many_threads_are_distinct_and_written_as_the_uuid_module_writes_them():
    import threading

    found: list[list[str]] = [[] for _ in range(8)]

    def make(bucket: list[str]) -> None:
        bucket.extend(new_uuid() for _ in range(600))

    threads = [threading.Thread(target=make, args=(bucket,)) for bucket in found]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    every = [i for bucket in found for i in bucket]
    assert len(set(every)) == len(every) == 4800
    assert all(str(uuid.UUID(i)) == i and uuid.UUID(i).version == 4 for i in every)
