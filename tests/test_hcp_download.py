"""HCP download against a real S3 API server on loopback (moto's server mode) holding a tiny HCP-shaped tree."""

from __future__ import annotations

import gzip
import hashlib
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import boto3
import botocore.exceptions as bce
import nibabel as nib
import numpy as np
import pytest

from dmriscope.cohort import hcp
from dmriscope.cohort.hcp import HCP_FILES, S3Source, download_subject, etag_md5, part_path
from dmriscope.io import InputError

BUCKET = "hcp-test-bucket"
SUBJECTS = ("100206", "100307")
KEY_ID = "AKIAFAKEKEYID0123456"
SECRET = "fakeSecretKey/abcdefghijklmnopqrstuvwxyz01"
TOKEN = "fakeSessionToken0123456789"


def nifti_bytes(data: np.ndarray) -> bytes:
    """A gzipped NIfTI-1 image in memory (mtime 0: the same bytes every call)."""
    image = nib.Nifti1Image(data, np.diag([1.25, 1.25, 1.25, 1.0]))
    return gzip.compress(image.to_bytes(), compresslevel=1, mtime=0)


def subject_files(seed: int) -> dict[str, bytes]:
    """Small stand-ins for data.nii.gz (8x8x6x10 float32), bvals, bvecs and nodif_brain_mask.nii.gz."""
    rng = np.random.default_rng(seed)
    bvals = np.array([5, 1000, 2000, 3000, 5, 1000, 2000, 3000, 990, 1985])
    bvecs = rng.normal(size=(3, bvals.size))
    bvecs /= np.linalg.norm(bvecs, axis=0)
    return {
        "data.nii.gz": nifti_bytes(rng.random((8, 8, 6, bvals.size)).astype(np.float32)),
        "bvals": (" ".join(str(b) for b in bvals) + "\n").encode(),
        "bvecs": "\n".join(" ".join(f"{v:.6f}" for v in row) for row in bvecs).encode() + b"\n",
        "nodif_brain_mask.nii.gz": nifti_bytes((rng.random((8, 8, 6)) > 0.3).astype(np.uint8)),
    }


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    """moto's S3 server on 127.0.0.1 and a free port, with a tiny HCP_1200 tree in BUCKET."""
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    url = f"http://127.0.0.1:{port}"
    client = boto3.client(
        "s3", endpoint_url=url, region_name="us-east-1", aws_access_key_id=KEY_ID, aws_secret_access_key=SECRET
    )
    client.create_bucket(Bucket=BUCKET)
    for i, subject in enumerate(SUBJECTS):
        for name, body in subject_files(i).items():
            client.put_object(Bucket=BUCKET, Key=f"HCP_1200/{subject}/T1w/Diffusion/{name}", Body=body)
    client.put_object(Bucket=BUCKET, Key="HCP_1200/100408/T1w/T1w_acpc_dc.nii.gz", Body=b"no diffusion here")
    yield url
    server.stop()


@pytest.fixture(autouse=True)
def fake_credentials(monkeypatch, tmp_path):
    """Fake keys in the environment; no ~/.aws files or instance metadata can be used instead."""
    for name in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", KEY_ID)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    monkeypatch.setenv("AWS_SESSION_TOKEN", TOKEN)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


def source(endpoint: str, **overrides) -> S3Source:
    settings = {"bucket": BUCKET, "endpoint_url": endpoint, "backoff_s": 0.01, "chunk_mb": 1 / 1024, **overrides}
    return S3Source(**settings)


def destinations(root: Path, subject: str) -> dict[str, Path]:
    return {name: root / f"sub-{subject}" / ours for name, ours in HCP_FILES.items()}


def recorded_gets(client) -> list[dict]:
    """Record the parameters of every GetObject the client sends."""
    calls: list[dict] = []
    client.meta.events.register("provide-client-params.s3.GetObject", lambda params, **_: calls.append(dict(params)))
    return calls


def assert_fetched(dests: dict[str, Path], seed: int) -> None:
    for name, body in subject_files(seed).items():
        assert dests[name].read_bytes() == body, name
        assert not part_path(dests[name]).exists()


def test_complete_download_is_not_fetched_again(endpoint, tmp_path):
    src = source(endpoint)
    client = hcp.make_client(src)
    gets = recorded_gets(client)
    dests = destinations(tmp_path, "100307")
    remotes = download_subject("100307", dests, src, client)
    assert_fetched(dests, 1)
    assert all(remote.md5 == hashlib.md5(dests[name].read_bytes()).hexdigest() for name, remote in remotes.items())
    assert len(gets) == 4
    download_subject("100307", dests, src, client)
    assert len(gets) == 4  # same size and MD5: nothing fetched again
    dests["bvals"].write_bytes(b"0 0 0\n")  # a stale file is replaced
    download_subject("100307", dests, src, client)
    assert len(gets) == 5
    assert_fetched(dests, 1)


def test_resume_from_a_partial_file(endpoint, tmp_path):
    src = source(endpoint)
    client = hcp.make_client(src)
    gets = recorded_gets(client)
    dests = destinations(tmp_path, "100206")
    body = subject_files(0)["data.nii.gz"]
    dests["data.nii.gz"].parent.mkdir(parents=True)
    part_path(dests["data.nii.gz"]).write_bytes(body[: len(body) // 2])  # left by an interrupted run
    download_subject("100206", dests, src, client)
    assert_fetched(dests, 0)
    ranges = [call.get("Range") for call in gets if call["Key"].endswith("data.nii.gz")]
    assert ranges == [f"bytes={len(body) // 2}-"]


def test_corrupt_partial_is_refetched(endpoint, tmp_path):
    src = source(endpoint)
    client = hcp.make_client(src)
    gets = recorded_gets(client)
    dests = destinations(tmp_path, "100206")
    body = subject_files(0)["data.nii.gz"]
    dests["data.nii.gz"].parent.mkdir(parents=True)
    part_path(dests["data.nii.gz"]).write_bytes(b"\0" * (len(body) // 3))  # right length so far, wrong bytes
    download_subject("100206", dests, src, client)
    assert_fetched(dests, 0)
    ranges = [call.get("Range") for call in gets if call["Key"].endswith("data.nii.gz")]
    assert ranges == [f"bytes={len(body) // 3}-", None]  # the MD5 caught it; the second attempt starts over


class Killed(BaseException):
    """Stands for the job being killed: nothing in the downloader may catch it."""


def interrupt_once(monkeypatch, error: BaseException, after_bytes: int) -> None:
    """Make the first transfer stop with `error` after writing `after_bytes` bytes."""
    real = hcp.copy_body
    state = {"armed": True}

    def copy_body(body, fh, chunk_bytes, **kwargs):
        if not state["armed"]:
            return real(body, fh, chunk_bytes, **kwargs)
        state["armed"] = False
        fh.write(body.read(after_bytes))
        body.close()
        raise error

    monkeypatch.setattr(hcp, "copy_body", copy_body)


def test_transfer_killed_midway_then_rerun(endpoint, tmp_path, monkeypatch):
    src = source(endpoint)
    dests = destinations(tmp_path, "100206")
    interrupt_once(monkeypatch, Killed(), after_bytes=1000)
    with pytest.raises(Killed):
        download_subject("100206", dests, src)
    assert not any(path.exists() for path in dests.values())  # nothing looks complete
    assert part_path(dests["data.nii.gz"]).stat().st_size == 1000
    client = hcp.make_client(src)
    gets = recorded_gets(client)
    download_subject("100206", dests, src, client)
    assert_fetched(dests, 0)
    assert [call.get("Range") for call in gets if call["Key"].endswith("data.nii.gz")] == ["bytes=1000-"]


def test_dropped_connection_is_retried_and_resumed(endpoint, tmp_path, monkeypatch):
    src = source(endpoint)
    client = hcp.make_client(src)
    gets = recorded_gets(client)
    dests = destinations(tmp_path, "100206")
    interrupt_once(monkeypatch, bce.ResponseStreamingError(error="connection reset"), after_bytes=777)
    download_subject("100206", dests, src, client)
    assert_fetched(dests, 0)
    assert [call.get("Range") for call in gets if call["Key"].endswith("data.nii.gz")] == [None, "bytes=777-"]


def test_missing_subject_is_one_line(endpoint, tmp_path):
    with pytest.raises(InputError, match=r"subject 999999: no objects under s3://hcp-test-bucket/HCP_1200/999999/"):
        download_subject("999999", destinations(tmp_path, "999999"), source(endpoint))
    with pytest.raises(InputError, match=r"subject 100408: .*/T1w/Diffusion/data.nii.gz not found") as info:
        download_subject("100408", destinations(tmp_path, "100408"), source(endpoint))
    assert "\n" not in str(info.value)


def test_wrong_size_leaves_nothing(endpoint, tmp_path, monkeypatch):
    real = hcp.stat_object

    def stat_object(client, src, subject, name):  # S3 says the object is larger than what arrives
        remote = real(client, src, subject, name)
        return remote if name != "bvecs" else hcp.RemoteObject(remote.key, remote.size + 7, remote.etag, remote.md5)

    monkeypatch.setattr(hcp, "stat_object", stat_object)
    dests = destinations(tmp_path, "100307")
    with pytest.raises(InputError, match=r"subject 100307: .*bvecs: .*expected \d+ \(gave up after 3 attempts\)"):
        download_subject("100307", dests, source(endpoint, max_attempts=3))
    assert not any(path.exists() for path in dests.values())
    assert not any(part_path(path).exists() for path in dests.values() if path.name == "dwi.bvec")


def test_no_credentials_is_one_line(endpoint, tmp_path, monkeypatch):
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name)
    with pytest.raises(InputError, match="no AWS credentials found; check the AWS credentials"):
        download_subject("100307", destinations(tmp_path, "100307"), source(endpoint))
    with pytest.raises(InputError, match="config key 'hcp.aws_profile': AWS profile 'nobody' not found"):
        hcp.make_client(source(endpoint, aws_profile="nobody"))


def test_multipart_object_is_size_checked(endpoint, tmp_path):
    """A multipart upload's ETag is no MD5: the download still completes, checked by size."""
    client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
    files = subject_files(5)
    big = np.random.default_rng(5).bytes(5 * 2**20 + 1000)  # two parts: S3's 5 MiB minimum + a tail
    prefix = "HCP_1200/100610/T1w/Diffusion/"
    upload = client.create_multipart_upload(Bucket=BUCKET, Key=prefix + "data.nii.gz")
    parts = []
    for number, chunk in enumerate((big[: 5 * 2**20], big[5 * 2**20 :]), start=1):
        part = client.upload_part(
            Bucket=BUCKET, Key=prefix + "data.nii.gz", UploadId=upload["UploadId"], PartNumber=number, Body=chunk
        )
        parts.append({"ETag": part["ETag"], "PartNumber": number})
    client.complete_multipart_upload(
        Bucket=BUCKET, Key=prefix + "data.nii.gz", UploadId=upload["UploadId"], MultipartUpload={"Parts": parts}
    )
    for name in ("bvals", "bvecs", "nodif_brain_mask.nii.gz"):
        client.put_object(Bucket=BUCKET, Key=prefix + name, Body=files[name])
    dests = destinations(tmp_path, "100610")
    remotes = download_subject("100610", dests, source(endpoint, chunk_mb=1.0))
    assert remotes["data.nii.gz"].md5 is None and remotes["bvals"].md5 is not None
    assert dests["data.nii.gz"].read_bytes() == big


@pytest.mark.parametrize(
    ("etag", "encryption", "expected"),
    [
        ('"046febe500cfd4a1b0eea7c5a6e239f3"', None, "046febe500cfd4a1b0eea7c5a6e239f3"),
        ('"046febe500cfd4a1b0eea7c5a6e239f3"', "AES256", "046febe500cfd4a1b0eea7c5a6e239f3"),
        ('"046febe500cfd4a1b0eea7c5a6e239f3"', "aws:kms", None),
        ('"9b2cf535f27731c974343645a3985328-12"', None, None),
    ],
)
def test_etag_md5(etag, encryption, expected):
    assert etag_md5(etag, encryption) == expected


def test_rule_downloads_and_never_logs_credentials(endpoint, tmp_path, project_root):
    """The download_hcp_subject rule end to end (a real Snakemake run) against the loopback server."""
    work = tmp_path / "work"
    work.mkdir()
    (work / "hcp.csv").write_text(  # 100610 completes the cohort for the split; only two subjects are fetched
        "Subject,Gender,Age,3T_dMRI_Compl\n100206,M,26-30,true\n100307,F,22-25,true\n100408,F,36+,false\n"
        "100610,M,26-30,true\n"
    )
    (work / "config.yaml").write_text(
        f"cohort: {{source: hcp}}\nhcp: {{demographics: hcp.csv, bucket: {BUCKET}, endpoint_url: '{endpoint}'}}\n"
        "split: {n_train: 1, n_val: 1, n_test: 1}\n"
    )
    targets = [f"results/raw/sub-{s}/{ours}" for s in ("100206", "100307") for ours in HCP_FILES.values()]
    command = [sys.executable, "-m", "snakemake", *targets, "-s", str(project_root / "Snakefile"), "-d", str(work)]
    command += ["--configfile", str(work / "config.yaml"), "--cores", "2", "--resources", "s3_connections=1"]
    run = subprocess.run(
        command, check=False, cwd=work, env=dict(os.environ), capture_output=True, text=True, timeout=300
    )
    assert run.returncode == 0, run.stderr[-3000:]
    for seed, subject in enumerate(("100206", "100307")):
        assert_fetched(destinations(work / "results" / "raw", subject), seed)
    logs = "".join(path.read_text() for path in (work / "logs").rglob("*.log"))
    assert "files fetched" in logs
    for text in (logs, run.stdout, run.stderr):
        assert KEY_ID not in text and SECRET not in text and TOKEN not in text
    for path in work.rglob("*"):
        if path.is_file() and path.stat().st_size < 10_000_000:
            content = path.read_bytes()
            assert KEY_ID.encode() not in content and SECRET.encode() not in content, path
