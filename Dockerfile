# The collector as a container image. Build: docker build -t thermowatch-collector .
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
WORKDIR /app
COPY pyproject.toml README.md ./
COPY shared ./shared
COPY collector ./collector
COPY edge ./edge
COPY thermowatch ./thermowatch
RUN pip install --no-cache-dir . \
    && useradd --system --uid 10001 thermowatch \
    && mkdir /broker && chown thermowatch:thermowatch /broker
# /broker: the broker's password/ACL files and state, shared with the Mosquitto container
# (a new named volume takes this folder's owner).
USER thermowatch

# HTTP API, CoAP (UDP)
EXPOSE 8080 5683/udp
ENV THERMOWATCH_HTTP_HOST=0.0.0.0 THERMOWATCH_COAP_HOST=0.0.0.0
HEALTHCHECK --interval=30s --timeout=3s CMD python -c "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8080/healthz').status == 200 else 1)"
CMD ["thermowatch", "collector", "serve"]
