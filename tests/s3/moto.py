"""The S3 tests' helper around a real moto server (PyPI moto[server]) with
IAM enforced: it creates the users and objects a test needs through the S3
and IAM APIs, and reads the server's own record of the requests it got.

    python moto.py ENDPOINT setup BUCKET       -> JSON: admin and reader keys
    python moto.py ENDPOINT put BUCKET KEY FILE
    python moto.py ENDPOINT put-dir BUCKET PREFIX DIR   (every file under DIR, keys PREFIX + relative path)
    python moto.py ENDPOINT delete BUCKET KEY
    python moto.py ENDPOINT deny BUCKET KEY    (the reader may not GET KEY)
    python moto.py ENDPOINT deny-put BUCKET KEY (the reader may not PUT KEY)
    python moto.py ENDPOINT get BUCKET KEY     -> the object's bytes
    python moto.py ENDPOINT cold BUCKET KEY FILE (stored as GLACIER: 403 on GET)
    python moto.py ENDPOINT requests           -> JSON: [[method, path], ...] since the last call

The server must run with INITIAL_NO_AUTH_ACTION_COUNT=3 (the three calls
that create the admin) and MOTO_ENABLE_RECORDING=True. Keys are read from
KEYS_FILE beside the server's other state (the test passes it).
"""
import json
import os
import sys
import urllib.parse
import urllib.request

import boto3

ep, cmd, *args = sys.argv[1:]
keys_file = os.environ["MOTO_KEYS_FILE"]
region = "us-east-1"


def client(kind, keys):
    return boto3.client(kind, endpoint_url=ep, region_name=region,
                        aws_access_key_id=keys["id"], aws_secret_access_key=keys["secret"])


def load():
    with open(keys_file) as f:
        return json.load(f)


def save(k):
    with open(keys_file, "w") as f:
        json.dump(k, f)


def reader_policy(denied):
    statements = [{"Effect": "Allow", "Action": ["s3:*", "sts:*"], "Resource": "*"}]
    for key in denied:
        action = "s3:GetObject"
        if key.startswith("PUT "):
            action, key = "s3:PutObject", key[4:]
        statements.append({"Effect": "Deny", "Action": [action], "Resource": f"arn:aws:s3:::{key}"})
    return json.dumps({"Version": "2012-10-17", "Statement": statements})


if cmd == "setup":
    (bucket,) = args
    anon = {"id": "anonymous", "secret": "anonymous"}
    iam = client("iam", anon)
    # The three unauthenticated calls the server allows.
    iam.create_user(UserName="admin")
    a = iam.create_access_key(UserName="admin")["AccessKey"]
    iam.put_user_policy(UserName="admin", PolicyName="all", PolicyDocument=json.dumps(
        {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}))
    admin = {"id": a["AccessKeyId"], "secret": a["SecretAccessKey"]}
    iam = client("iam", admin)
    iam.create_user(UserName="reader")
    r = iam.create_access_key(UserName="reader")["AccessKey"]
    iam.put_user_policy(UserName="reader", PolicyName="read", PolicyDocument=reader_policy([]))
    client("s3", admin).create_bucket(Bucket=bucket)
    keys = {"admin": admin, "reader": {"id": r["AccessKeyId"], "secret": r["SecretAccessKey"]}, "denied": []}
    save(keys)
    print(json.dumps(keys["reader"]))
elif cmd == "put":
    bucket, key, path = args
    with open(path, "rb") as f:
        client("s3", load()["admin"]).put_object(Bucket=bucket, Key=key, Body=f.read())
elif cmd == "put-dir":
    bucket, prefix, root = args
    s3 = client("s3", load()["admin"])
    for dirpath, _, files in os.walk(root):
        for name in files:
            path = os.path.join(dirpath, name)
            if os.path.islink(path):
                continue
            rel = os.path.relpath(path, root).replace(os.sep, "/")
            with open(path, "rb") as f:
                s3.put_object(Bucket=bucket, Key=prefix + rel, Body=f.read())
elif cmd == "cold":
    bucket, key, path = args
    with open(path, "rb") as f:
        client("s3", load()["admin"]).put_object(Bucket=bucket, Key=key, Body=f.read(), StorageClass="GLACIER")
elif cmd == "delete":
    bucket, key = args
    client("s3", load()["admin"]).delete_object(Bucket=bucket, Key=key)
elif cmd == "deny":
    bucket, key = args
    keys = load()
    keys["denied"].append(f"{bucket}/{key}")
    client("iam", keys["admin"]).put_user_policy(
        UserName="reader", PolicyName="read", PolicyDocument=reader_policy(keys["denied"]))
    save(keys)
elif cmd == "deny-put":
    bucket, key = args
    keys = load()
    keys["denied"].append(f"PUT {bucket}/{key}")
    client("iam", keys["admin"]).put_user_policy(
        UserName="reader", PolicyName="read", PolicyDocument=reader_policy(keys["denied"]))
    save(keys)
elif cmd == "get":
    bucket, key = args
    body = client("s3", load()["admin"]).get_object(Bucket=bucket, Key=key)["Body"].read()
    sys.stdout.write(body.decode())
elif cmd == "requests":
    with urllib.request.urlopen(f"{ep}/moto-api/recorder/download-recording") as r:
        lines = [json.loads(l) for l in r.read().decode().splitlines() if l.strip()]
    urllib.request.urlopen(urllib.request.Request(f"{ep}/moto-api/recorder/reset-recording", method="POST")).read()
    out = []
    for l in lines:
        u = urllib.parse.urlsplit(l["url"])
        out.append([l["method"], urllib.parse.unquote(u.path), u.query])
    print(json.dumps(out))
else:
    sys.exit(f"unknown command {cmd}")
