"""The labelling loop: Label Studio's ML backend and odstack's training manager, in one small service.

- :mod:`odstack.labelling.backend`: Label Studio's ML backend protocol (``/health``, ``/setup``,
  ``/predict``, ``/webhook``), pre-labels from the model TF Serving serves.
- :mod:`odstack.labelling.manager`: training jobs (export the project from Label Studio, ``data``,
  ``train``, ``eval``, ``export`` = publish the next serving version), queued, one at a time by default.
- :mod:`odstack.labelling.db`: the jobs' table (SQLAlchemy: SQLite by default, PostgreSQL by DATABASE_URL).

It lives in odstack (not in client/) because the manager runs odstack's own stages and shares its
settings; it needs neither TensorFlow nor Label Studio in its venv (``.venv/labelling``).
Start it with ``python -m odstack.labelling [key=value ...]`` (``make label``).
"""
