#!/usr/bin/env python3
"""Writes fuzz/model/ecs-inputs.json: the request shapes of today's ECS model (botocore's
ecs/2014-11-13/service-2.json), without documentation: every operation's input shape and the
shapes it reaches. Usage: fuzz/model/trim.py <service-2.json> > fuzz/model/ecs-inputs.json"""
import json
import sys

model = json.load(open(sys.argv[1]))
shapes = model["shapes"]
keep = {}


def visit(name):
    if name in keep:
        return
    shape = {k: v for k, v in shapes[name].items() if k not in ("documentation", "exception", "error")}
    for member in shape.get("members", {}).values():
        for k in list(member):
            if k not in ("shape",):
                del member[k]
    keep[name] = shape
    for member in shape.get("members", {}).values():
        visit(member["shape"])
    for key in ("member", "key", "value"):
        if key in shape:
            visit(shape[key]["shape"])


operations = {}
for name, op in sorted(model["operations"].items()):
    shape = op.get("input", {}).get("shape")
    operations[name] = shape
    if shape:
        visit(shape)
json.dump({"targetPrefix": model["metadata"]["targetPrefix"], "operations": operations,
           "shapes": dict(sorted(keep.items()))}, sys.stdout, indent=0, sort_keys=True)
print()
