#!/usr/bin/env python3
"""Validates every document of the YAML files given: Gateway API kinds against
the CRDs beside this script, core kinds with kubernetes-validate (strict).
Prints one line per problem and exits 1 if there is any."""
import glob
import os
import sys

import jsonschema
import kubernetes_validate
import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
# Kinds with no published schema to check against here (Envoy Gateway's CRDs
# are not vendored): reported as unchecked, not as failures.
UNCHECKED = {("gateway.envoyproxy.io/v1alpha1", "BackendTrafficPolicy")}


def crd_schemas():
    schemas = {}
    for path in glob.glob(os.path.join(HERE, "*.yaml")):
        with open(path) as f:
            for crd in yaml.safe_load_all(f):
                if not crd or crd.get("kind") != "CustomResourceDefinition":
                    continue
                group = crd["spec"]["group"]
                kind = crd["spec"]["names"]["kind"]
                for v in crd["spec"]["versions"]:
                    key = (f"{group}/{v['name']}", kind)
                    schemas[key] = v["schema"]["openAPIV3Schema"]
    return schemas


def main(paths):
    schemas = crd_schemas()
    problems = 0
    for path in paths:
        with open(path) as f:
            docs = [d for d in yaml.safe_load_all(f) if d]
        for doc in docs:
            name = f"{doc.get('kind')} {doc.get('metadata', {}).get('namespace', '')}/{doc.get('metadata', {}).get('name')}"
            key = (doc.get("apiVersion"), doc.get("kind"))
            if key in UNCHECKED:
                print(f"{path}: {name}: not checked (no published schema here)")
                continue
            try:
                if key in schemas:
                    jsonschema.validate(doc, schemas[key])
                else:
                    # Raises SchemaNotFoundError for a kind it does not know.
                    kubernetes_validate.validate(doc, "1.33.0", strict=True)
            except Exception as e:  # every kind of failure is a problem to report
                problems += 1
                why = (str(e).splitlines() or [type(e).__name__])[0]
                print(f"{path}: {name}: {why}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
