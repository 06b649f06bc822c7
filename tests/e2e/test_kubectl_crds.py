"""Custom resources with the real kubectl: a CRD is applied, served, used and deleted.

Aspects: `kubectl apply` of a CRD and `kubectl wait` for Established; apply of
a custom resource (defaults filled, unknown fields refused as kubectl's
Strict validation asks); `kubectl get` printing the printer columns and short
names; `kubectl explain` from the CRD's schema; `kubectl patch --type=merge`
and the strategic-merge refusal; `kubectl scale` through the scale
subresource; `kubectl delete crd` removing the objects and the kind.
"""

from __future__ import annotations

import json

import pytest

CRD = """
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.e2e.example.com
spec:
  group: e2e.example.com
  scope: Namespaced
  names:
    plural: widgets
    singular: widget
    kind: Widget
    shortNames: [wdg]
  versions:
  - name: v1
    served: true
    storage: true
    subresources:
      status: {}
      scale:
        specReplicasPath: .spec.replicas
        statusReplicasPath: .status.replicas
    additionalPrinterColumns:
    - name: Size
      type: integer
      jsonPath: .spec.size
    - name: Color
      type: string
      jsonPath: .spec.color
    - name: Age
      type: date
      jsonPath: .metadata.creationTimestamp
    schema:
      openAPIV3Schema:
        type: object
        description: A Widget is a thing with a size and a color.
        properties:
          spec:
            type: object
            description: WidgetSpec says how big and which color.
            properties:
              size:
                type: integer
                minimum: 1
                description: How big the widget is.
              color:
                type: string
                default: red
                enum: [red, blue]
                description: Its color.
              replicas:
                type: integer
          status:
            type: object
            properties:
              replicas:
                type: integer
"""

WIDGET = """
apiVersion: e2e.example.com/v1
kind: Widget
metadata:
  name: small
spec:
  size: 2
"""


@pytest.fixture(scope="module")
def widgets(cluster):
    """The CRD applied and established, and one Widget applied."""
    out = cluster.kubectl("apply", "-f", "-", input=CRD).stdout
    assert (
        out.strip()
        == "customresourcedefinition.apiextensions.k8s.io/widgets.e2e.example.com created"
    )
    cluster.kubectl(
        "wait", "--for=condition=Established", "crd/widgets.e2e.example.com", "--timeout=20s"
    )
    out = cluster.kubectl("apply", "-f", "-", input=WIDGET).stdout
    assert out.strip() == "widget.e2e.example.com/small created"
    yield cluster
    cluster.kubectl("delete", "crd", "widgets.e2e.example.com", "--ignore-not-found", "--wait=true")


def test_get_prints_printer_columns(widgets) -> None:
    out = widgets.kubectl("get", "widgets").stdout
    header, row = out.splitlines()
    assert header.split() == ["NAME", "SIZE", "COLOR", "AGE"]
    assert row.split()[:3] == ["small", "2", "red"]
    out = widgets.kubectl("get", "wdg", "small", "-o", "json").stdout
    obj = json.loads(out)
    assert obj["spec"] == {"size": 2, "color": "red"}  # the schema's default
    assert obj["metadata"]["generation"] == 1


def test_api_resources_lists_the_kind(widgets) -> None:
    out = widgets.kubectl("api-resources", "--api-group=e2e.example.com").stdout
    row = out.splitlines()[1].split()
    assert row == ["widgets", "wdg", "e2e.example.com/v1", "true", "Widget"]


def test_explain_uses_the_schema(widgets) -> None:
    out = widgets.kubectl("explain", "widget.spec").stdout
    assert out.splitlines()[:3] == [
        "GROUP:      e2e.example.com",
        "KIND:       Widget",
        "VERSION:    v1",
    ]
    assert "FIELD: spec <Object>" in out
    assert "WidgetSpec says how big and which color." in out
    assert "size\t<integer>" in out and "How big the widget is." in out
    assert "color\t<string>" in out


def test_patch_merge_and_strategic_refused(widgets) -> None:
    out = widgets.kubectl(
        "patch", "widget", "small", "--type=merge", "-p", '{"spec":{"color":"blue"}}'
    ).stdout
    assert out.strip() == "widget.e2e.example.com/small patched"
    out = widgets.kubectl("get", "widget", "small", "-o", "jsonpath={.spec.color}").stdout
    assert out == "blue"
    done = widgets.kubectl(
        "patch", "widget", "small", "--type=strategic", "-p", '{"spec":{"size":3}}', check=False
    )
    assert done.returncode != 0
    assert done.stderr == (
        "error: application/strategic-merge-patch+json is not supported by "
        "e2e.example.com/v1, Kind=Widget: the body of the request was in an unknown format - "
        "accepted media types include: application/json-patch+json, "
        "application/merge-patch+json, application/apply-patch+yaml\n"
    )


def test_apply_again_configures(widgets) -> None:
    changed = WIDGET.replace("size: 2", "size: 4")
    out = widgets.kubectl("apply", "-f", "-", input=changed).stdout
    assert out.strip() == "widget.e2e.example.com/small configured"
    out = widgets.kubectl("apply", "-f", "-", input=changed).stdout
    assert out.strip() == "widget.e2e.example.com/small unchanged"
    out = widgets.kubectl("get", "widget", "small", "-o", "jsonpath={.spec.size}").stdout
    assert out == "4"


def test_invalid_and_unknown_fields_refused(widgets) -> None:
    bad = WIDGET.replace("name: small", "name: bad").replace("size: 2", "size: 0")
    done = widgets.kubectl("apply", "-f", "-", input=bad, check=False)
    assert done.returncode != 0
    assert 'The Widget "bad" is invalid' in done.stderr
    assert "spec.size" in done.stderr
    unknown = WIDGET.replace("name: small", "name: odd").replace("size: 2", "size: 2\n  shape: x")
    done = widgets.kubectl("apply", "-f", "-", input=unknown, check=False)
    assert done.returncode != 0 and 'unknown field "spec.shape"' in done.stderr
    done = widgets.kubectl("get", "widgets", "bad", "odd", check=False)
    assert "NotFound" in done.stderr


def test_scale(widgets) -> None:
    out = widgets.kubectl("scale", "widget", "small", "--replicas=3").stdout
    assert out.strip() == "widget.e2e.example.com/small scaled"
    out = widgets.kubectl("get", "widget", "small", "-o", "jsonpath={.spec.replicas}").stdout
    assert out == "3"


def test_delete_crd_removes_everything(widgets) -> None:
    widgets.kubectl("apply", "-f", "-", input=WIDGET.replace("name: small", "name: other"))
    out = widgets.kubectl("delete", "crd", "widgets.e2e.example.com").stdout
    assert (
        out.strip()
        == 'customresourcedefinition.apiextensions.k8s.io "widgets.e2e.example.com" deleted'
    )
    done = widgets.kubectl("get", "crd", "widgets.e2e.example.com", check=False)
    assert done.returncode != 0 and "NotFound" in done.stderr
    done = widgets.kubectl("get", "widgets", check=False)
    # kubectl's discovery cache still names the kind, so the list itself is refused.
    assert done.returncode != 0
    assert "the server could not find the requested resource" in done.stderr
    # Defined again, the kind comes back empty: the objects went with the CRD.
    widgets.kubectl("apply", "-f", "-", input=CRD)
    widgets.kubectl(
        "wait", "--for=condition=Established", "crd/widgets.e2e.example.com", "--timeout=20s"
    )
    done = widgets.kubectl("get", "widgets")
    assert done.stdout == "" and "No resources found in default namespace." in done.stderr
