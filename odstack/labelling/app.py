"""The labelling service: the ML backend and the training manager in one Flask app on 127.0.0.1:9090."""
from __future__ import annotations

import logging
import sys
from pathlib import Path

from flask import Flask

from odstack.labelling import backend, db, manager
from odstack.labelling.config import LabellingSettings, load

LOG = logging.getLogger("odstack.labelling")


def create_app(settings: LabellingSettings, start_runner: bool = True) -> Flask:
    """The app; ``start_runner=False`` leaves queued jobs queued (the contract tests of the API)."""
    for name in ("serving_dir", "images_root", "work_dir"):  # the stages run from the repo root: absolute paths
        setattr(settings, name, Path(getattr(settings, name)).absolute())
    settings.ensure_manager_token()
    app = Flask(__name__)
    database = db.Database(settings.database_url)
    jobs = manager.Manager(settings, database)
    app.extensions["odstack.labelling.settings"] = settings
    app.extensions["odstack.labelling.predictor"] = backend.init_predictor(settings)
    app.extensions["odstack.labelling.manager"] = jobs
    app.extensions["odstack.labelling.start_training"] = lambda project, source: jobs.submit(project, source)
    app.register_blueprint(backend.bp)
    app.register_blueprint(manager.bp)
    if start_runner:
        jobs.start()
    return app


def main(argv: list[str] | None = None) -> int:
    from werkzeug.serving import make_server

    from odstack.errors import OdstackError

    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["label-config"]:  # the project's labelling config, for Label Studio's project settings
        if len(argv) != 2:
            print("usage: python -m odstack.labelling label-config <label_map.pbtxt>", file=sys.stderr)
            return 2
        print(backend.label_config_from_label_map(Path(argv[1])), end="")
        return 0
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        settings = load(argv)
        app = create_app(settings)
    except OdstackError as error:
        LOG.error("labelling: %s", error)
        return 2
    # one process (the runner threads live in it), a thread per request: Label Studio's calls never wait
    # for a job, and a slow Predict never blocks the job list
    server = make_server(settings.host, settings.port, app, threaded=True)
    token_note = ("ODSTACK_MANAGER_TOKEN" if load([]).manager_token
                  else f"{settings.work_dir / 'manager.token'}")
    LOG.info("labelling: ML backend http://%s:%d (connect it in Label Studio: Settings -> Model), "
             "jobs http://%s:%d/jobs (token: %s), model %s at %s", settings.host, settings.port, settings.host,
             settings.port, token_note, settings.model_name, settings.tf_serving)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        app.extensions["odstack.labelling.manager"].stop()
    return 0
