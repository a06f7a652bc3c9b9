"""The jobs table, through SQLAlchemy: SQLite by default (embedded), PostgreSQL when DATABASE_URL says so.

The database is the queue: a job is a row, its state moves queued -> running -> done | failed | cancelled,
so the job list survives restarts and the runner needs no other broker.
"""
from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

from sqlalchemy import (Boolean, DateTime, Float, Integer, String, Text, create_engine, event, select)
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker

QUEUED, RUNNING, DONE, FAILED, CANCELLED = "queued", "running", "done", "failed", "cancelled"
FINISHED = (DONE, FAILED, CANCELLED)


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)


class Base(DeclarativeBase):
    pass


class Job(Base):
    __tablename__ = "labelling_jobs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    project: Mapped[int] = mapped_column(Integer)  # Label Studio project id
    source: Mapped[str] = mapped_column(String(32), default="api")  # api | label_studio (its webhook)
    state: Mapped[str] = mapped_column(String(16), default=QUEUED, index=True)
    stage: Mapped[str] = mapped_column(String(32), default="")  # export | data | train | eval | publish
    engine: Mapped[str] = mapped_column(String(32))
    model: Mapped[str] = mapped_column(String(128))
    steps: Mapped[int] = mapped_column(Integer)
    train_args: Mapped[str] = mapped_column(Text, default="")
    run: Mapped[str] = mapped_column(String(128), default="")  # the run under output/
    step: Mapped[int] = mapped_column(Integer, default=0)
    loss: Mapped[float | None] = mapped_column(Float, nullable=True)
    ap: Mapped[float | None] = mapped_column(Float, nullable=True)
    metrics: Mapped[str] = mapped_column(Text, default="{}")  # JSON: eval metrics, data report counts
    published_version: Mapped[int | None] = mapped_column(Integer, nullable=True)
    error: Mapped[str] = mapped_column(Text, default="")
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    started_at: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)
    finished_at: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)

    def as_dict(self) -> dict[str, Any]:
        def when(value: dt.datetime | None) -> str | None:
            return value.isoformat() + "Z" if value else None

        return {"id": self.id, "project": self.project, "source": self.source, "state": self.state,
                "stage": self.stage, "engine": self.engine, "model": self.model, "steps": self.steps,
                "train_args": self.train_args, "run": self.run, "step": self.step, "loss": self.loss,
                "ap": self.ap, "metrics": json.loads(self.metrics or "{}"),
                "published_version": self.published_version, "error": self.error,
                "cancel_requested": self.cancel_requested, "created_at": when(self.created_at),
                "started_at": when(self.started_at), "finished_at": when(self.finished_at)}


class Database:
    """An engine + session factory; ``create_all`` makes the table (idempotent, no migrations yet)."""

    def __init__(self, url: str) -> None:
        if url.startswith("sqlite:///") and not url.startswith("sqlite:///:memory:"):
            Path(url[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)
        # the runner thread and the web threads share the engine; SQLite then needs check_same_thread off
        options = {"connect_args": {"check_same_thread": False, "timeout": 30}} if url.startswith("sqlite") else {
            "pool_pre_ping": True}
        self.engine: Engine = create_engine(url, **options)
        if url.startswith("sqlite"):
            event.listen(self.engine, "connect", _sqlite_pragmas)
        self.sessions = sessionmaker(self.engine, expire_on_commit=False)
        Base.metadata.create_all(self.engine)

    def session(self) -> Session:
        return self.sessions()

    def jobs(self, limit: int = 200) -> list[Job]:
        with self.session() as session:
            return list(session.scalars(select(Job).order_by(Job.id.desc()).limit(limit)))

    def job(self, job_id: int) -> Job | None:
        with self.session() as session:
            return session.get(Job, job_id)

    def update(self, job_id: int, **values: Any) -> Job:
        with self.session() as session, session.begin():
            job = session.get(Job, job_id)
            if job is None:
                raise KeyError(job_id)
            for key, value in values.items():
                setattr(job, key, value)
        return job

    def dispose(self) -> None:
        self.engine.dispose()


def _sqlite_pragmas(connection: Any, _record: Any) -> None:
    # WAL: readers (the job list) never wait for the runner's writes
    cursor = connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.close()
