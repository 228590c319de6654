"""The Kubernetes deployment is valid and says what it must (deploy/k8s, Dockerfile).

No cluster runs here, so deploy/k8s/validate.sh builds every overlay and checks it against
offline Kubernetes and CRD schemas; these tests run it once, then assert what schemas cannot:
resources and probes on every container, non-root pods, autoscaling bounds that match the
partitions in schemas/topics.py, topics that mirror it, no secret values, network policies
that keep each role to its peers, and production numbers equal to `eventpipe plan`'s output.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

from eventpipe.plan import assumptions
from eventpipe.settings import Settings
from eventpipe.schemas.topics import topic_specs

ROOT = Path(__file__).resolve().parents[1]
K8S = ROOT / "deploy" / "k8s"
OVERLAYS = ("base", "local", "production")
EVENTPIPE_ROLES = {"eventpipe-collector", "eventpipe-processor", "eventpipe-migrate"}

pytestmark = pytest.mark.timeout(900)  # the first validate.sh run installs its tools (~2 min)


@pytest.fixture(scope="session")
def validated(tmp_path_factory):
    out = tmp_path_factory.mktemp("k8s")
    proc = subprocess.run([str(K8S / "validate.sh"), "--out", str(out)], capture_output=True, text=True)
    if proc.returncode == 3:  # go or python3 missing: the tooling cannot be installed here
        pytest.skip(proc.stderr.strip())
    return proc, out


@pytest.fixture(scope="session")
def manifests(validated) -> dict[str, list[dict]]:
    proc, out = validated
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    return {name: json.loads((out / f"{name}.json").read_text()) for name in OVERLAYS}


def of_kind(docs, kind, name=None):
    return [d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]


def one(docs, kind, name):
    found = of_kind(docs, kind, name)
    assert len(found) == 1, f"{kind}/{name}: {len(found)} found"
    return found[0]


def pod_specs(docs):
    """(owner, pod spec) for every pod template: workloads and the operators' pod templates."""
    for d in docs:
        if d["kind"] in ("Deployment", "StatefulSet", "DaemonSet", "Job"):
            yield f"{d['kind']}/{d['metadata']['name']}", d["spec"]["template"]["spec"]
        elif d["kind"] in ("ClickHouseInstallation", "ClickHouseKeeperInstallation"):
            for t in d["spec"]["templates"]["podTemplates"]:
                yield f"{d['kind']}/{t['name']}", t["spec"]


def test_validate_sh_passes_for_every_overlay(validated):
    proc, _ = validated
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    assert "all overlays valid" in proc.stdout
    for name in OVERLAYS:
        assert f"kubeconform -strict {name}" in proc.stdout
    assert "Invalid: 0, Errors: 0" in proc.stdout


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_container_has_requests_and_limits(manifests, overlay):
    for owner, spec in pod_specs(manifests[overlay]):
        for c in spec.get("initContainers", []) + spec["containers"]:
            res = c.get("resources", {})
            for kind in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(res.get(kind, {})), f"{owner}/{c['name']}: {kind} {res}"
    for pool in of_kind(manifests[overlay], "KafkaNodePool"):
        assert {"requests", "limits"} <= set(pool["spec"]["resources"]), pool["metadata"]["name"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_pods_run_as_non_root_without_privileges(manifests, overlay):
    for owner, spec in pod_specs(manifests[overlay]):
        pod = spec.get("securityContext", {})
        assert pod.get("runAsNonRoot") is True and pod.get("runAsUser", 0) != 0, owner
        assert pod.get("seccompProfile", {}).get("type") == "RuntimeDefault", owner
        for c in spec["containers"]:
            sc = c.get("securityContext", {})
            assert sc.get("allowPrivilegeEscalation") is False, f"{owner}/{c['name']}"
            assert sc.get("capabilities", {}).get("drop") == ["ALL"], f"{owner}/{c['name']}"
            assert "add" not in sc.get("capabilities", {}), f"{owner}/{c['name']}"
    for d in manifests[overlay]:
        if d["kind"] in ("Deployment", "Job"):
            spec = d["spec"]["template"]["spec"]
            assert spec["automountServiceAccountToken"] is False, d["metadata"]["name"]
            for c in spec["containers"]:
                assert c["securityContext"]["readOnlyRootFilesystem"] is True, d["metadata"]["name"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_probes_and_graceful_termination(manifests, overlay):
    docs = manifests[overlay]
    collector = one(docs, "Deployment", "eventpipe-collector")["spec"]["template"]["spec"]
    (c,) = collector["containers"]
    assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert c["startupProbe"]["httpGet"]["path"] == "/healthz"
    assert c["ports"] == [{"name": "http", "containerPort": 8080, "protocol": "TCP"}]
    sleep = int(c["lifecycle"]["preStop"]["exec"]["command"][-1])
    assert collector["terminationGracePeriodSeconds"] >= sleep + 30  # drain after endpoints are gone
    processor = one(docs, "Deployment", "eventpipe-processor")["spec"]["template"]["spec"]
    (p,) = processor["containers"]
    assert p["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "web"}  # 503 while writes stall
    for probe in ("startupProbe", "livenessProbe"):
        assert p[probe]["httpGet"] == {"path": "/healthz", "port": "web"}
    assert p["ports"][0]["containerPort"] == Settings().processor_web_port
    assert processor["terminationGracePeriodSeconds"] >= 60
    for name, (dep, role) in {"collector": (collector, c), "processor": (processor, p)}.items():
        env = {e["name"]: e for e in role["env"]}
        assert "EVENTPIPE_KAFKA_BOOTSTRAP" in env, name
    assert {e["name"]: e.get("value") for e in c["env"]}["EVENTPIPE_COLLECTOR_HOST"] == "0.0.0.0"
    p_env = {e["name"]: e.get("value") for e in p["env"]}
    assert p_env["EVENTPIPE_PROCESSOR_WEB_HOST"] == "0.0.0.0"
    mounts = {m["mountPath"]: m["name"] for m in p["volumeMounts"]}
    volumes = {v["name"]: v for v in processor["volumes"]}
    assert "emptyDir" in volumes[mounts[p_env["EVENTPIPE_DATA_DIR"]]]  # writable with a read-only root


def test_roles_are_cli_commands_and_dockerfile_runs_them_as_non_root(manifests):
    from eventpipe.cli import build_parser

    commands = set(build_parser()._subparsers._group_actions[0].choices)
    for d in manifests["base"]:
        if d["kind"] in ("Deployment", "Job"):
            for c in d["spec"]["template"]["spec"]["containers"]:
                assert c["image"].startswith("eventpipe:") and c["args"][0] in commands, c["args"]
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^USER 10001:10001$", dockerfile, re.M)
    assert re.search(r"^HEALTHCHECK ", dockerfile, re.M)
    assert re.search(r'^ENTRYPOINT \["eventpipe"\]$', dockerfile, re.M)
    assert "EXPOSE 8080 6066" in dockerfile
    for owner, spec in pod_specs(manifests["base"]):
        if owner.startswith(("Deployment", "Job")):
            assert spec["securityContext"]["runAsUser"] == 10001, owner  # the image's user


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_autoscaling_bounds_follow_the_partitions(manifests, overlay):
    docs = manifests[overlay]
    raw = topic_specs()[0]
    topic = next(t for t in of_kind(docs, "KafkaTopic") if t["spec"]["topicName"] == raw.name)
    partitions = topic["spec"]["partitions"]  # production: the plan's (test_production_numbers_come_from_the_plan)
    if overlay != "production":
        assert partitions == raw.partitions
    so = one(docs, "ScaledObject", "eventpipe-processor")["spec"]
    assert so["scaleTargetRef"]["name"] == "eventpipe-processor"
    assert 1 <= so["minReplicaCount"] <= so["maxReplicaCount"] <= partitions
    if overlay != "local":
        assert so["maxReplicaCount"] == partitions  # one processor per partition at most
    kafka = {t["type"]: t for t in so["triggers"]}["kafka"]["metadata"]
    assert kafka["topic"] == Settings().topic_raw
    app_source = (ROOT / "processors" / "app.py").read_text()
    assert re.search(r'faust\.App\(\s*"' + re.escape(kafka["consumerGroup"]) + '"', app_source)
    # allowIdleConsumers "false" would cap the lag at partitions x threshold: from P-1 replicas a
    # ratio of P/(P-1), inside the HPA tolerance, so replica P would never come (eventpipe/plan/simulation.py).
    assert kafka["allowIdleConsumers"] == "true"
    assert int(kafka["lagThreshold"]) > 0
    hpa = one(docs, "HorizontalPodAutoscaler", "eventpipe-collector")["spec"]
    assert hpa["scaleTargetRef"]["name"] == "eventpipe-collector"
    assert 1 <= hpa["minReplicas"] < hpa["maxReplicas"]
    assert {m["type"] for m in hpa["metrics"]} == {"Resource", "Pods"}
    assert "replicas" not in one(docs, "Deployment", "eventpipe-collector")["spec"]  # the HPA owns it
    assert "replicas" not in one(docs, "Deployment", "eventpipe-processor")["spec"]  # KEDA owns it


def test_autoscaler_behaviour_is_what_the_plan_simulates(manifests):
    docs = manifests["base"]
    expected_up = [
        {"type": "Percent", "value": assumptions.SCALE_UP_PERCENT, "periodSeconds": assumptions.TICK_S},
        {"type": "Pods", "value": assumptions.SCALE_UP_PODS, "periodSeconds": assumptions.TICK_S},
    ]
    expected_down = [{"type": "Percent", "value": assumptions.SCALE_DOWN_PERCENT, "periodSeconds": assumptions.TICK_S}]
    hpa = one(docs, "HorizontalPodAutoscaler", "eventpipe-collector")["spec"]["behavior"]
    so = one(docs, "ScaledObject", "eventpipe-processor")["spec"]
    keda = so["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]
    for behavior, up_window in ((hpa, assumptions.SCALE_UP_WINDOW_S), (keda, assumptions.PROCESSOR_SCALE_UP_WINDOW_S)):
        assert behavior["scaleUp"]["stabilizationWindowSeconds"] == up_window
        assert behavior["scaleDown"]["stabilizationWindowSeconds"] == assumptions.SCALE_DOWN_WINDOW_S
        assert behavior["scaleUp"]["policies"] == expected_up and behavior["scaleUp"]["selectPolicy"] == "Max"
        assert behavior["scaleDown"]["policies"] == expected_down
    assert so["pollingInterval"] == assumptions.TICK_S


def test_production_numbers_come_from_the_plan(manifests):
    sizing = json.loads((K8S / "plan" / "plan.json").read_text())["sizing"]
    docs = manifests["production"]
    hpa = one(docs, "HorizontalPodAutoscaler", "eventpipe-collector")["spec"]
    col = sizing["collector"]
    assert (hpa["minReplicas"], hpa["maxReplicas"]) == (col["min_replicas"], col["max_replicas"])
    metrics = {m["type"]: m for m in hpa["metrics"]}
    assert metrics["Resource"]["resource"]["target"]["averageUtilization"] == col["hpa_target_cpu_percent"]
    assert int(metrics["Pods"]["pods"]["target"]["averageValue"]) == col["hpa_target_rps_per_pod"]
    so = one(docs, "ScaledObject", "eventpipe-processor")["spec"]
    proc = sizing["processor"]
    assert (so["minReplicaCount"], so["maxReplicaCount"]) == (proc["min_replicas"], proc["max_replicas"])
    triggers = {t["type"]: t["metadata"] for t in so["triggers"]}
    assert int(triggers["kafka"]["lagThreshold"]) == proc["lag_threshold_records"]
    assert int(triggers["cpu"]["value"]) == proc["cpu_target_percent"]
    brokers = one(docs, "KafkaNodePool", "brokers")["spec"]
    assert brokers["replicas"] == sizing["kafka"]["brokers"]
    assert brokers["storage"]["volumes"][0]["size"] == f"{sizing['kafka']['disk_per_broker_gib']}Gi"
    raw_topic = next(t for t in of_kind(docs, "KafkaTopic") if t["spec"]["topicName"] == topic_specs()[0].name)
    assert raw_topic["spec"]["partitions"] == sizing["kafka"]["partitions"]
    chi = one(docs, "ClickHouseInstallation", "eventpipe")["spec"]
    ch = sizing["clickhouse"]
    layout = chi["configuration"]["clusters"][0]["layout"]
    assert layout == {"shardsCount": ch["shards"], "replicasCount": ch["replicas"]}
    storage = chi["templates"]["volumeClaimTemplates"][0]["spec"]["resources"]["requests"]["storage"]
    assert storage == f"{ch['disk_per_node_gib']}Gi"
    (container,) = one(docs, "Deployment", "eventpipe-collector")["spec"]["template"]["spec"]["containers"]
    assert float(container["resources"]["requests"]["cpu"]) == col["pod_cpu"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_kafka_topics_mirror_schemas_topics(manifests, overlay):
    docs = manifests[overlay]
    topics = {t["spec"]["topicName"]: t for t in of_kind(docs, "KafkaTopic")}
    specs = {s.name: s for s in topic_specs()}
    assert set(topics) == set(specs)
    (kafka,) = of_kind(docs, "Kafka")
    for name, spec in specs.items():
        t = topics[name]["spec"]
        if not (overlay == "production" and name == topic_specs()[0].name):  # production: the plan's count
            assert t["partitions"] == spec.partitions
        assert {k: str(v) for k, v in t["config"].items() if k in spec.configs()} == spec.configs()
        assert int(t["config"]["min.insync.replicas"]) <= t["replicas"]
        assert topics[name]["metadata"]["labels"]["strimzi.io/cluster"] == kafka["metadata"]["name"]
    largest = max(s.max_message_bytes for s in specs.values())
    assert int(kafka["spec"]["kafka"]["config"]["message.max.bytes"]) >= largest


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_operator_resources_fit_together(manifests, overlay):
    """What kubeconform cannot check for Strimzi and Altinity kinds (no CRD schema available)."""
    docs = manifests[overlay]
    (kafka,) = of_kind(docs, "Kafka")
    name = kafka["metadata"]["name"]
    assert kafka["apiVersion"] == "kafka.strimzi.io/v1beta2"
    assert kafka["metadata"]["annotations"] == {"strimzi.io/node-pools": "enabled", "strimzi.io/kraft": "enabled"}
    assert kafka["spec"]["kafka"]["version"] == Settings().kafka_version
    assert "zookeeper" not in kafka["spec"] and "replicas" not in kafka["spec"]["kafka"]  # KRaft + node pools
    pools = of_kind(docs, "KafkaNodePool")
    roles = {r for p in pools for r in p["spec"]["roles"]}
    assert roles == {"controller", "broker"}
    for p in pools:
        assert p["metadata"]["labels"]["strimzi.io/cluster"] == name
        assert set(p["spec"]["roles"]) <= {"controller", "broker"}
        for v in p["spec"]["storage"]["volumes"]:
            assert v["type"] in ("persistent-claim", "ephemeral") and re.fullmatch(r"\d+[GT]i", v["size"])
    controllers = sum(p["spec"]["replicas"] for p in pools if "controller" in p["spec"]["roles"])
    brokers = sum(p["spec"]["replicas"] for p in pools if "broker" in p["spec"]["roles"])
    assert controllers % 2 == 1  # a KRaft quorum
    config = kafka["spec"]["kafka"]["config"]
    assert config["default.replication.factor"] <= brokers and config["min.insync.replicas"] < max(2, brokers)
    for t in of_kind(docs, "KafkaTopic"):
        assert t["spec"]["replicas"] <= brokers
    bootstrap = f"{name}-kafka-bootstrap:9092"
    for dep in ("eventpipe-collector", "eventpipe-processor"):
        (c,) = one(docs, "Deployment", dep)["spec"]["template"]["spec"]["containers"]
        assert {e["name"]: e.get("value") for e in c["env"]}["EVENTPIPE_KAFKA_BOOTSTRAP"] == bootstrap
    so = one(docs, "ScaledObject", "eventpipe-processor")
    keda = {t["type"]: t for t in so["spec"]["triggers"]}["kafka"]["metadata"]
    namespace = so["metadata"].get("namespace", "eventpipe")
    assert keda["bootstrapServers"] == f"{name}-kafka-bootstrap.{namespace}.svc:9092"  # KEDA runs elsewhere

    (chk,) = of_kind(docs, "ClickHouseKeeperInstallation")
    (chi,) = of_kind(docs, "ClickHouseInstallation")
    assert chk["spec"]["configuration"]["clusters"][0]["layout"]["replicasCount"] % 2 == 1
    zk = chi["spec"]["configuration"]["zookeeper"]["nodes"]
    assert zk == [{"host": f"keeper-{chk['metadata']['name']}", "port": 2181}]
    (svc,) = chi["spec"]["templates"]["serviceTemplates"]
    assert svc["spec"]["type"] == "ClusterIP"  # not the operator's default LoadBalancer
    assert chi["spec"]["defaults"]["templates"]["serviceTemplate"] == svc["name"]
    layout = chi["spec"]["configuration"]["clusters"][0]["layout"]
    if overlay == "production":
        assert layout["replicasCount"] >= 2 and brokers >= 3 and controllers >= 3
    labels = {
        t["metadata"]["labels"]["app.kubernetes.io/name"]
        for d in (chi, chk)
        for t in d["spec"]["templates"]["podTemplates"]
    }
    assert labels == {"eventpipe-clickhouse", "eventpipe-keeper"}  # what the NetworkPolicies select


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_no_secret_values_in_manifests(manifests, overlay):
    docs = manifests[overlay]
    assert not of_kind(docs, "Secret"), "Secrets are created out of band (docs/deploy.md)"
    sensitive = re.compile(r"KEY|PASSWORD|SECRET|TOKEN|CLICKHOUSE_URL", re.I)
    for owner, spec in pod_specs(docs):
        for c in spec["containers"]:
            for e in c.get("env", []):
                if sensitive.search(e["name"]):
                    assert "value" not in e and "secretKeyRef" in e["valueFrom"], f"{owner}: {e['name']}"
    (chi,) = of_kind(docs, "ClickHouseInstallation")
    users = chi["spec"]["configuration"]["users"]
    for key, value in users.items():
        if "password" in key:
            assert set(value) == {"valueFrom"} and "secretKeyRef" in value["valueFrom"], key
    text = json.dumps(docs)
    assert "demo-write-key" not in text
    assert not re.search(r"://[^/\s\"@]+:[^/\s\"@]+@", text), "credentials in a URL"
    assert not re.search(r'"(password|token|secret)"\s*:\s*"[^"]', text, re.I)
    referenced = {
        e["valueFrom"]["secretKeyRef"]["name"]
        for _, spec in pod_specs(docs)
        for c in spec["containers"]
        for e in c.get("env", [])
        if "valueFrom" in e
    }
    assert referenced == {"eventpipe-write-keys", "eventpipe-clickhouse"}  # the two docs/deploy.md creates


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_network_policies_keep_each_role_to_its_peers(manifests, overlay):
    docs = manifests[overlay]
    policies = {p["metadata"]["name"]: p["spec"] for p in of_kind(docs, "NetworkPolicy")}
    deny = policies["eventpipe-default-deny-ingress"]
    assert deny["podSelector"] == {} and deny["policyTypes"] == ["Ingress"] and "ingress" not in deny

    def egress(name):
        spec = policies[name]
        assert "Egress" in spec["policyTypes"]
        out = set()
        for rule in spec["egress"]:
            for peer in rule["to"]:
                selector = peer.get("podSelector", {}).get("matchLabels", {})
                target = (
                    "dns"
                    if selector.get("k8s-app") == "kube-dns"
                    else "kafka"
                    if selector.get("strimzi.io/kind") == "Kafka"
                    else selector.get("app.kubernetes.io/name", "?")
                )
                out |= {(target, p["port"]) for p in rule["ports"]}
        return out

    dns = {("dns", 53)}
    assert egress("eventpipe-collector") == {("kafka", 9092)} | dns
    assert egress("eventpipe-processor") == {("kafka", 9092), ("eventpipe-clickhouse", 8123)} | dns
    assert egress("eventpipe-migrate") == {("eventpipe-clickhouse", 8123)} | dns
    for name in ("eventpipe-collector", "eventpipe-processor", "eventpipe-migrate"):
        assert policies[name]["podSelector"]["matchLabels"]["app.kubernetes.io/name"] == name
    (kafka,) = of_kind(docs, "Kafka")
    (listener,) = kafka["spec"]["kafka"]["listeners"]
    peers = [
        p.get("podSelector", {}).get("matchLabels", {}).get("app.kubernetes.io/name")
        for p in listener["networkPolicyPeers"]
    ]
    assert {"eventpipe-collector", "eventpipe-processor"} <= set(peers)
    assert "eventpipe-migrate" not in peers  # the migration Job never talks to Kafka
    ch_ingress = policies["eventpipe-clickhouse"]["ingress"][0]
    assert {p["podSelector"]["matchLabels"]["app.kubernetes.io/name"] for p in ch_ingress["from"]} == {
        "eventpipe-processor",
        "eventpipe-migrate",
    }


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_ingress_exposes_only_the_segment_api(manifests, overlay):
    (ing,) = of_kind(manifests[overlay], "Ingress")
    paths = [p for rule in ing["spec"]["rules"] for p in rule["http"]["paths"]]
    assert [(p["path"], p["pathType"]) for p in paths] == [("/v1", "Prefix")]
    assert paths[0]["backend"]["service"]["name"] == "eventpipe-collector"
    if overlay == "production":
        assert ing["spec"]["tls"][0]["hosts"] == [ing["spec"]["rules"][0]["host"]]


def test_pdbs_and_spread_keep_collectors_and_processors_available(manifests):
    docs = manifests["production"]
    for name in ("eventpipe-collector", "eventpipe-processor"):
        pdb = one(docs, "PodDisruptionBudget", name)["spec"]
        assert pdb["maxUnavailable"] == 1 and pdb["selector"]["matchLabels"]["app.kubernetes.io/name"] == name
        spread = one(docs, "Deployment", name)["spec"]["template"]["spec"]["topologySpreadConstraints"]
        assert "topology.kubernetes.io/zone" in {s["topologyKey"] for s in spread}
    hpa = one(docs, "HorizontalPodAutoscaler", "eventpipe-collector")["spec"]
    assert hpa["minReplicas"] >= 3  # one per zone, and a PDB of 1 still leaves two
    job = one(docs, "Job", "eventpipe-migrate")["spec"]
    assert job["template"]["spec"]["restartPolicy"] == "Never" and job["backoffLimit"] > 0


def test_slo_alerts_use_the_metrics_the_code_exports(manifests):
    import eventpipe.ingest.metrics as metrics

    rules = one(manifests["base"], "PrometheusRule", "eventpipe-slos")["spec"]["groups"]
    exprs = " ".join(r["expr"] for g in rules for r in g["rules"])
    alerts = {r["alert"] for g in rules for r in g["rules"] if "alert" in r}
    assert metrics.REQUEST_SECONDS._name + "_bucket" in exprs
    assert metrics.REQUESTS._name + "_total" in exprs and 'code=~"5.."' in exprs
    assert re.search(r'Histogram\(\s*"eventpipe_freshness_seconds"', (ROOT / "processors" / "metrics.py").read_text())
    assert "eventpipe_freshness_seconds_bucket" in exprs
    assert 'kafka_consumergroup_lag{consumergroup="eventpipe-processor", topic="events.raw"}' in exprs
    assert {
        "EventpipeCollectorLatencyHigh",
        "EventpipeCollectorErrorBudgetFastBurn",
        "EventpipeFreshnessHigh",
        "EventpipeProcessorLagGrowing",
        "EventpipeProcessorStalled",
    } <= alerts
    from eventpipe.processors.health import CONSECUTIVE_FAILURES, OLDEST_UNWRITTEN

    assert CONSECUTIVE_FAILURES._name in exprs and OLDEST_UNWRITTEN._name in exprs
    monitors = {d["metadata"]["name"]: d for d in manifests["base"] if d["kind"] in ("ServiceMonitor", "PodMonitor")}
    assert monitors["eventpipe-collector"]["spec"]["endpoints"][0]["port"] == "http"
    assert monitors["eventpipe-processor"]["spec"]["podMetricsEndpoints"][0]["port"] == "web"


def test_production_kafka_is_what_the_cluster_tests_ran(manifests):
    """Replication, min ISR and leader election as in tests/test_cluster.py's local 3-node cluster
    (eventpipe/broker.py), brokers from the plan, and replicas spread across zones."""
    from eventpipe.broker import replication_for, topic_configs

    docs = manifests["production"]
    replicas, min_isr = replication_for(3)
    assert (replicas, min_isr) == (3, 2)
    (kafka,) = of_kind(docs, "Kafka")
    config = kafka["spec"]["kafka"]["config"]
    assert config["default.replication.factor"] == replicas and config["min.insync.replicas"] == min_isr
    assert config["offsets.topic.replication.factor"] == replicas
    assert config["transaction.state.log.replication.factor"] == replicas
    assert config["transaction.state.log.min.isr"] == min_isr
    assert config["unclean.leader.election.enable"] is False
    for spec in topic_specs():
        (topic,) = [t for t in of_kind(docs, "KafkaTopic") if t["spec"]["topicName"] == spec.name]
        tested = topic_configs(spec, nodes=3)
        assert topic["spec"]["replicas"] == replicas
        for key in ("min.insync.replicas", "unclean.leader.election.enable"):
            assert str(topic["spec"]["config"][key]).lower() == tested[key], (spec.name, key)
    sizing = json.loads((K8S / "plan" / "plan.json").read_text())["sizing"]["kafka"]
    brokers = one(docs, "KafkaNodePool", "brokers")["spec"]
    assert brokers["replicas"] == sizing["brokers"] >= replicas and sizing["replication"] == replicas
    assert one(docs, "KafkaNodePool", "controllers")["spec"]["replicas"] == 3  # a quorum that survives one loss
    assert kafka["spec"]["kafka"]["rack"] == {"topologyKey": "topology.kubernetes.io/zone"}
    spread = one(docs, "Deployment", "eventpipe-collector")["spec"]["template"]["spec"]["topologySpreadConstraints"]
    assert kafka["spec"]["kafka"]["rack"]["topologyKey"] in {s["topologyKey"] for s in spread}  # the same zones
