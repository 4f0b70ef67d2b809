"""HCP Young Adult diffusion data from S3: four files per subject, resumable, verified, renamed into place.

For each subject, ``{prefix}/{subject}/T1w/Diffusion/{data.nii.gz, bvals, bvecs, nodif_brain_mask.nii.gz}`` of the
bucket (``hcp-openaccess``, prefix ``HCP_1200`` by default) becomes ``dwi.nii.gz, dwi.bval, dwi.bvec,
brain_mask.nii.gz``. Each object is streamed into a hidden ``.<name>.part`` file beside its destination; an
interrupted transfer resumes from the bytes already there (a ranged GET pinned to the object's ETag); the part is
checked against the object's ContentLength and, when the ETag is a plain MD5 (single-part upload, no KMS), its MD5.
Only when all four are verified are they renamed onto the output paths, so an interrupted job never leaves a file
that looks complete, and verified parts or outputs are not fetched again.

Credentials come from boto3's standard chain (environment, ``~/.aws``, an optional profile name); they are never
read from the config, logged or written. API calls retry through botocore's retry config; each transfer is retried
here with exponential backoff and jitter.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import random
import time
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import boto3
import botocore.exceptions as bce
from botocore.config import Config

from dmriscope.io import InputError, progress

log = logging.getLogger(__name__)

#: HCP file name -> the workflow's name for it (results/raw/sub-{subject}/...)
HCP_FILES: dict[str, str] = {
    "data.nii.gz": "dwi.nii.gz",
    "bvals": "dwi.bval",
    "bvecs": "dwi.bvec",
    "nodif_brain_mask.nii.gz": "brain_mask.nii.gz",
}
RETRYABLE_STATUS = frozenset({408, 429, 500, 502, 503, 504})
DENIED_CODES = frozenset({"403", "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken"})
NETWORK_ERRORS = (bce.ConnectionError, bce.HTTPClientError, bce.IncompleteReadError, bce.ResponseStreamingError)
CREDENTIAL_HINT = "check the AWS credentials (AWS_* environment variables, ~/.aws, or hcp.aws_profile)"


@dataclass(frozen=True)
class S3Source:
    """Where and how to fetch: bucket/prefix, an optional endpoint and profile, retry and chunk settings.

    ``backoff_s`` is the first retry delay in seconds (doubled per attempt, capped at 60 s); ``chunk_mb`` is the
    streaming block size in MiB.
    """

    bucket: str = "hcp-openaccess"
    prefix: str = "HCP_1200"
    endpoint_url: str | None = None
    region: str = "us-east-1"
    aws_profile: str | None = None
    max_attempts: int = 5
    backoff_s: float = 2.0
    chunk_mb: float = 8.0
    timeout_s: float = 60.0

    @classmethod
    def from_config(cls, hcp: Mapping[str, Any]) -> S3Source:
        """The S3 settings of the config's ``hcp`` section (other keys there are ignored)."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in hcp.items() if k in names and v is not None})

    def key(self, subject: str, name: str) -> str:
        """Object key of one HCP file of one subject."""
        return f"{self.prefix.strip('/')}/{subject}/T1w/Diffusion/{name}"

    def url(self, key: str) -> str:
        return f"s3://{self.bucket}/{key}"


@dataclass(frozen=True)
class RemoteObject:
    """One object's identity: key, size in bytes, ETag (quoted, as S3 returns it) and MD5 hex when checkable."""

    key: str
    size: int
    etag: str
    md5: str | None


class _Retry(Exception):
    """A transfer failure worth another attempt (network, 5xx, short or corrupt data)."""


def s3_settings(hcp: Mapping[str, Any]) -> dict[str, Any]:
    """The ``hcp`` keys that define the download (passed to the rule as params)."""
    names = {f.name for f in fields(S3Source)}
    return {k: v for k, v in hcp.items() if k in names}


def make_client(source: S3Source) -> Any:
    """An S3 client from boto3's credential chain, with botocore's standard retry mode and timeouts."""
    quiet_aws_loggers()
    try:
        session = boto3.Session(profile_name=source.aws_profile, region_name=source.region)
    except bce.ProfileNotFound:
        raise InputError(f"config key 'hcp.aws_profile': AWS profile {source.aws_profile!r} not found") from None
    config = Config(
        retries={"max_attempts": source.max_attempts, "mode": "standard"},
        connect_timeout=source.timeout_s,
        read_timeout=source.timeout_s,
    )
    return session.client("s3", endpoint_url=source.endpoint_url, config=config)


def quiet_aws_loggers() -> None:
    """Keep boto3/botocore/urllib3 at WARNING: their DEBUG output carries request headers."""
    for name in ("boto3", "botocore", "s3transfer", "urllib3"):
        logging.getLogger(name).setLevel(logging.WARNING)


def etag_md5(etag: str, encryption: str | None = None) -> str | None:
    """The MD5 hex digest an ETag stands for, or None: multipart ETags (``<hex>-<parts>``) and KMS/SSE-C objects
    have ETags that are not the MD5 of the content."""
    tag = etag.strip('"').lower()
    if encryption in ("aws:kms", "aws:kms:dsse", "SSE-C") or len(tag) != 32 or "-" in tag:
        return None
    return tag if all(c in "0123456789abcdef" for c in tag) else None


def _error_code(exc: bce.ClientError) -> tuple[str, int]:
    response = exc.response
    return str(response.get("Error", {}).get("Code", "")), int(
        response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
    )


def _classify(exc: Exception, source: S3Source, subject: str, key: str) -> Exception:
    """Map a boto exception to `_Retry` (transient) or a one-line `InputError` (the user must act)."""
    where = f"subject {subject}: {source.url(key)}"
    if isinstance(exc, bce.NoCredentialsError | bce.PartialCredentialsError):
        return InputError(f"{where}: no AWS credentials found; {CREDENTIAL_HINT}")
    if isinstance(exc, NETWORK_ERRORS):
        return _Retry(f"{type(exc).__name__}: {exc}")
    if isinstance(exc, bce.ClientError):
        code, status = _error_code(exc)
        if code in DENIED_CODES:
            return InputError(f"{where}: access denied ({code}); {CREDENTIAL_HINT}")
        if status in RETRYABLE_STATUS:
            return _Retry(f"HTTP {status} {code}")
        return InputError(f"{where}: S3 error {code} (HTTP {status})")
    return exc


def _missing(client: Any, source: S3Source, subject: str, name: str) -> InputError:
    """The error for a missing object: the whole subject is absent, or only this file."""
    try:
        listing = client.list_objects_v2(
            Bucket=source.bucket, Prefix=f"{source.prefix.strip('/')}/{subject}/", MaxKeys=1
        )
        absent = listing.get("KeyCount", 0) == 0
    except bce.ClientError:  # listing may be denied; fall back to naming the file
        absent = False
    if absent:
        return InputError(
            f"subject {subject}: no objects under {source.url(source.prefix.strip('/') + '/' + subject)}/"
        )
    return InputError(f"subject {subject}: {source.url(source.key(subject, name))} not found (no diffusion data?)")


def stat_object(client: Any, source: S3Source, subject: str, name: str) -> RemoteObject:
    """HEAD one HCP file; a missing subject or file is a one-line `InputError` naming the subject."""
    key = source.key(subject, name)
    try:
        head = client.head_object(Bucket=source.bucket, Key=key)
    except Exception as exc:
        if isinstance(exc, bce.ClientError) and (_error_code(exc)[1] == 404 or _error_code(exc)[0] == "NoSuchKey"):
            raise _missing(client, source, subject, name) from None
        classified = _classify(exc, source, subject, key)
        if classified is exc:
            raise
        if isinstance(classified, _Retry):  # botocore has already retried the call max_attempts times
            classified = InputError(f"subject {subject}: {source.url(key)}: {classified} (endpoint unreachable?)")
        raise classified from None
    etag = head["ETag"]
    encryption = "SSE-C" if head.get("SSECustomerAlgorithm") else head.get("ServerSideEncryption")
    return RemoteObject(key=key, size=int(head["ContentLength"]), etag=etag, md5=etag_md5(etag, encryption))


def file_md5(path: Path, chunk: int = 8 << 20) -> str:
    """MD5 hex digest of a file, read in blocks."""
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def is_complete(path: Path, remote: RemoteObject) -> bool:
    """True when `path` holds the object: same size, and the same MD5 where the ETag gives one."""
    if not path.is_file() or path.stat().st_size != remote.size:
        return False
    return remote.md5 is None or file_md5(path) == remote.md5


def part_path(dest: Path) -> Path:
    """The hidden temporary name a transfer writes to before the rename (``.dwi.nii.gz.part``)."""
    return dest.with_name(f".{dest.name}.part")


def copy_body(body: Any, fh: Any, chunk_bytes: int, desc: str = "download", total_bytes: int | None = None) -> int:
    """Stream an S3 response body into an open file, block by block, with a progress bar; returns bytes written."""
    written = 0
    blocks = None if total_bytes is None else math.ceil(total_bytes / chunk_bytes)
    for block in progress(body.iter_chunks(chunk_bytes), desc=desc, total=blocks):
        fh.write(block)
        written += len(block)
    return written


def _transfer(client: Any, source: S3Source, remote: RemoteObject, part: Path) -> None:
    """Fetch the bytes `part` lacks: all of them, or the rest of a partial from an earlier attempt."""
    offset = part.stat().st_size if part.exists() else 0
    if offset > remote.size:
        log.warning("%s: partial file is larger than the object; starting over", part)
        part.unlink()
        offset = 0
    if offset == remote.size:
        return
    request: dict[str, Any] = {"Bucket": source.bucket, "Key": remote.key, "IfMatch": remote.etag}
    if offset:
        log.info("%s: resuming at byte %d of %d", remote.key, offset, remote.size)
        request["Range"] = f"bytes={offset}-"
    response = client.get_object(**request)
    if int(response["ContentLength"]) != remote.size - offset:
        response["Body"].close()
        part.unlink(missing_ok=True)
        raise _Retry(f"S3 announced {response['ContentLength']} bytes, expected {remote.size - offset}")
    with open(part, "ab") as fh:
        chunk = max(1, int(source.chunk_mb * (1 << 20)))
        copy_body(response["Body"], fh, chunk, desc=Path(remote.key).name, total_bytes=remote.size - offset)
        fh.flush()
        os.fsync(fh.fileno())


def _verify(part: Path, remote: RemoteObject) -> None:
    """Size against ContentLength, then MD5 where checkable; a bad part is deleted and the attempt retried."""
    size = part.stat().st_size if part.exists() else 0
    if size != remote.size:
        part.unlink(missing_ok=True)
        raise _Retry(f"wrote {size} bytes, S3 reports {remote.size}")
    if remote.md5 is not None and (digest := file_md5(part)) != remote.md5:
        part.unlink()
        raise _Retry(f"MD5 {digest} differs from the ETag {remote.md5}")


def fetch_object(client: Any, source: S3Source, subject: str, remote: RemoteObject, part: Path) -> RemoteObject:
    """Bring `remote` into `part`, verified; retries with exponential backoff; returns the object fetched.

    A changed object (the ETag no longer matches) is looked up again and fetched from the start.
    """
    name = Path(remote.key).name
    for attempt in range(1, source.max_attempts + 1):
        try:
            try:
                _transfer(client, source, remote, part)
            except bce.ClientError as exc:
                code, status = _error_code(exc)
                if status in (412, 416) or code in ("PreconditionFailed", "InvalidRange"):
                    part.unlink(missing_ok=True)
                    remote = stat_object(client, source, subject, name)
                    raise _Retry(f"object changed on the server ({code})") from None
                raise _classify(exc, source, subject, remote.key) from None
            except Exception as exc:
                raised = _classify(exc, source, subject, remote.key)
                if raised is exc:
                    raise
                raise raised from None
            _verify(part, remote)
            return remote
        except _Retry as exc:
            if attempt == source.max_attempts:
                part.unlink(missing_ok=True)
                raise InputError(
                    f"subject {subject}: {source.url(remote.key)}: {exc} (gave up after {attempt} attempts)"
                ) from None
            delay = min(source.backoff_s * 2 ** (attempt - 1), 60.0) * random.uniform(0.5, 1.0)
            log.warning(
                "%s: %s; attempt %d of %d, retrying in %.1f s", remote.key, exc, attempt, source.max_attempts, delay
            )
            time.sleep(delay)
    raise AssertionError("unreachable")


def download_subject(
    subject: str, outputs: Mapping[str, str | os.PathLike], source: S3Source, client: Any = None
) -> dict[str, RemoteObject]:
    """Fetch one subject's four HCP diffusion files to `outputs` (HCP file name -> destination path).

    Returns the verified objects by HCP name. Destinations already complete are kept; all new files are renamed
    into place only after every file has been verified.
    """
    missing = set(HCP_FILES) - set(outputs)
    if missing:
        raise ValueError(f"outputs lack {sorted(missing)}")
    client = client or make_client(source)
    dests = {name: Path(path) for name, path in outputs.items()}
    remotes = {name: stat_object(client, source, subject, name) for name in HCP_FILES}
    pending = []
    for name, remote in remotes.items():
        dest = dests[name]
        if is_complete(dest, remote):
            log.info("%s: complete (%d bytes), not fetched again", dest, remote.size)
            continue
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.unlink(missing_ok=True)
        part = part_path(dest)
        started = time.perf_counter()
        remotes[name] = fetch_object(client, source, subject, remote, part)
        seconds = time.perf_counter() - started
        log.info(
            "%s: %.1f MB in %.1f s (%s)",
            remote.key,
            remote.size / 1e6,
            seconds,
            "MD5 checked" if remote.md5 else "size checked",
        )
        pending.append(name)
    for name in pending:
        os.replace(part_path(dests[name]), dests[name])
    log.info("subject %s: %d files fetched, %d already complete", subject, len(pending), len(HCP_FILES) - len(pending))
    return remotes


def download_subject_files(*, subject: str, dwi: str, bval: str, bvec: str, mask: str, s3: Mapping[str, Any]) -> None:
    """Rule download_hcp_subject: `download_subject` into dmriscope's raw file names (config section ``hcp``)."""
    outputs = {"data.nii.gz": dwi, "bvals": bval, "bvecs": bvec, "nodif_brain_mask.nii.gz": mask}
    download_subject(subject, outputs, S3Source.from_config(s3))
