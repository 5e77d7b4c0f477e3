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
    && mkdir /broker /tls && chown thermowatch:thermowatch /broker /tls
# /broker: the broker's password/ACL files and state, shared with the Mosquitto container
# (a new named volume takes this folder's owner). /tls: the CA and server certificate.
USER thermowatch

# HTTP API, CoAP (UDP)
EXPOSE 8080 5683/udp
ENV THERMOWATCH_HTTP_HOST=0.0.0.0 THERMOWATCH_COAP_HOST=0.0.0.0
# Over HTTPS when the collector serves it, verified with the installation's CA (the
# certificate tls-init writes is valid for localhost).
HEALTHCHECK --interval=30s --timeout=3s CMD python -c "import os,ssl,sys,urllib.request as u; t=os.environ.get('THERMOWATCH_HTTP_TLS_CERT_FILE'); c=ssl.create_default_context(cafile=os.environ.get('THERMOWATCH_MQTT_TLS_CA_FILE')) if t else None; sys.exit(0 if u.urlopen(('https://localhost' if t else 'http://127.0.0.1') + ':8080/healthz', context=c).status == 200 else 1)"
CMD ["thermowatch", "collector", "serve"]
