"""The ceiling for POST /prediction: a bare Flask route, the model loaded once at start.

It does the same prediction as the API (JSON records to a DataFrame, then scoring.predict)
with nothing else: no validation, no reload check, no token, no error handling.
"""

import os
import pickle

import pandas as pd
from flask import Flask, jsonify, request

from clientrisk.config import load_config
from clientrisk.model.scoring import predict

config = load_config(os.environ["RISK_CONFIG"])
with open(config.deploy_dir / "trainedmodel.pkl", "rb") as handle:
    model = pickle.load(handle)
app = Flask(__name__)


@app.post("/prediction")
def prediction():
    predicted = predict(model, pd.DataFrame(request.get_json()["records"]))
    return jsonify(
        predictions=predicted["prediction"].tolist(),
        probabilities=predicted["probability"].round(6).tolist(),
    )
