"""`cnn serve`: a trained model behind HTTP. Reading uploads under size caps and decoding
them in memory by the training decode rules (upload.py), the loaded model with its batch
sizes compiled at start-up (engine.py), dynamic batching (batcher.py), Grad-CAM on request
(gradcam.py), what GET /model says (model_card.py), the routes (app.py), the page at `/`
(page.py) and starting uvicorn (server.py). Starlette and uvicorn are imported only here,
and only when a server starts.
"""
