"""Package `spark_jobs` as a versioned, reproducible zip plus entrypoint for spark-submit.

`spark-submit --py-files spark_jobs-<version>.zip spark_jobs_main.py JOB --ds ... --lake ...`
runs exactly what `python -m spark_jobs JOB ...` runs locally. The version carries a content
hash, so a changed job never overwrites the code a running cluster is using; `code_location` says
where in S3 a version goes (the EMR DAGs upload it there, preflight checks it may). The EMR tasks
build it at run time; `python -m scripts.package_spark_jobs` (`make package`) writes it to dist/.
"""

from __future__ import annotations

import hashlib
import io
import zipfile
from dataclasses import dataclass
from pathlib import Path

import spark_jobs
from include.emr_release import openlineage_jar
from include.settings import Settings

PACKAGE_DIR = Path(spark_jobs.__file__).resolve().parent
ENTRYPOINT_NAME = "spark_jobs_main.py"
ENTRYPOINT_SOURCE = (
    '"""EMR step entrypoint: spark-submit --py-files spark_jobs-<version>.zip spark_jobs_main.py JOB ..."""\n'
    "import sys\n\n"
    "from spark_jobs.cli import main\n\n"
    'if __name__ == "__main__":\n'
    "    sys.exit(main())\n"
)
_FIXED_TIME = (2020, 1, 1, 0, 0, 0)  # zip entries carry no build time: same code, same bytes


@dataclass(frozen=True)
class CodeBundle:
    version: str
    zip_bytes: bytes
    entrypoint_bytes: bytes

    @property
    def zip_name(self) -> str:
        return f"spark_jobs-{self.version}.zip"

    def write(self, out_dir: Path) -> tuple[Path, Path]:
        out_dir.mkdir(parents=True, exist_ok=True)
        zip_path, entry_path = out_dir / self.zip_name, out_dir / ENTRYPOINT_NAME
        zip_path.write_bytes(self.zip_bytes)
        entry_path.write_bytes(self.entrypoint_bytes)
        return zip_path, entry_path


def _sources() -> list[Path]:
    return sorted(p for p in PACKAGE_DIR.rglob("*.py") if "__pycache__" not in p.parts)


def build_bundle() -> CodeBundle:
    """Zip every module of spark_jobs (deterministically) and name it by version + content hash."""
    buffer = io.BytesIO()
    digest = hashlib.sha256()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for path in _sources():
            arcname = f"spark_jobs/{path.relative_to(PACKAGE_DIR).as_posix()}"
            data = path.read_bytes()
            digest.update(arcname.encode() + b"\0" + data + b"\0")
            info = zipfile.ZipInfo(arcname, date_time=_FIXED_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            zf.writestr(info, data)
    version = f"{spark_jobs.__version__}-{digest.hexdigest()[:12]}"
    return CodeBundle(version, buffer.getvalue(), ENTRYPOINT_SOURCE.encode())


def code_location(settings: Settings, version: str) -> dict[str, str]:
    """Where a code version lives in S3: one folder per version, never overwritten."""
    prefix = f"{settings.code_uri}/{version}"
    code = {
        "version": version,
        "py_files": f"{prefix}/spark_jobs-{version}.zip",
        "entrypoint": f"{prefix}/{ENTRYPOINT_NAME}",
    }
    if settings.lineage:
        # the OpenLineage listener beside the code (no EMR release bundles one), built for the
        # release's Scala (2.13 on emr-spark-8.x, 2.12 on emr-7.x); versioned by name
        code["jars"] = f"{settings.code_uri}/jars/{openlineage_jar(settings.release_label)}"
    return code
