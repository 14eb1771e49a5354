#!/usr/bin/env python3
"""Writes a realistic Claude Relay Service dataset into Redis (the layout of
../shared/relay-data-model.md): API keys in the formats of several releases with their usage
and cost keys, accounts of every type, groups, users, config singletons, quota cards and
redemptions, plus the ephemeral and derived keys a migration must skip.

    scripts/relay-data.py --url redis://:pw@127.0.0.1:16379/3 --api-keys 1000 [--light] [--seed 7]
        [--plain] [--hostile --manifest FILE] [--churn SECONDS]

Commands are streamed to `redis-cli --pipe` (no Python packages needed). --light writes, per
API key, only its hash, its lifetime usage and its lifetime cost (the benchmark's shape).

Keys carry the TTLs the relay sets (API keys 365 d, daily usage 32 d, hourly 7 d, ...: TTLS).
By default the data also has the shapes that break naive migrations, all of which a migration
can keep exactly: Chinese, emoji and other 4-byte characters in names and descriptions, 100 KB
descriptions on a few keys, and raw ciphertext bytes (not UTF-8, with NUL bytes) in account
token fields, which no typed column reads (--plain: none of these). --hostile adds records a
migration must reject by key, since a typed column or `source_key` (PostgreSQL text) cannot
hold them, and --manifest FILE lists them, and the byte values that must be kept, as JSON.
--churn SECONDS writes nothing new: for that long it deletes keys of the same dataset (same
--api-keys and --seed) and re-creates them a moment later, as a live relay does while a
migration runs.
"""

import argparse
import hashlib
import json
import os
import random
import re
import subprocess
import sys
import time
import urllib.parse
import uuid

DAY = 86400
# The TTLs the relay sets, by key family (first match wins; no match: no TTL).
TTLS = [
    (re.compile(r"^apikey:[0-9a-f-]{36}$"), 365 * DAY),
    (re.compile(r"^usage:cost:(real:)?daily:"), 30 * DAY),
    (re.compile(r"^usage:cost:monthly:"), 90 * DAY),
    (re.compile(r"^usage:cost:hourly:"), 7 * DAY),
    (re.compile(r"^usage:opus:(real:)?weekly:"), 14 * DAY),
    (re.compile(r"^usage:records:"), 90 * DAY),
    (re.compile(r"^(account_)?usage(:.*)?:daily:"), 32 * DAY),
    (re.compile(r"^(account_)?usage(:.*)?:monthly:"), 365 * DAY),
    (re.compile(r"^(account_)?usage(:.*)?:hourly:"), 7 * DAY),
]
# Names with what a naive migration mangles: CJK, emoji, 4-byte characters (U+1F680, U+20000).
NAMES = ["团队-{} 🚀", "Équipe {} ✓", "チーム{} 𠀀", "команда {} 🧪"]
LONG = "长描述 🦀 long description / " * 3700  # about 100 KB of UTF-8
MODELS = ["claude-sonnet-4-20250514", "claude-opus-4-1-20250805", "claude-3-5-haiku-20241022"]
DAYS = ["2026-02-27", "2026-02-28", "2026-03-01"]


def resp(*args):
    out = [f"*{len(args)}\r\n".encode()]
    for a in args:
        b = a if isinstance(a, bytes) else str(a).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(b), b))
    return b"".join(out)


def expire(key):
    """The EXPIRE the relay issues after writing `key`, if its family has a TTL."""
    name = key.decode(errors="replace") if isinstance(key, bytes) else key
    for pattern, ttl in TTLS:
        if pattern.search(name):
            return resp("EXPIRE", key, ttl)
    return b""


def hset(key, fields):
    args = ["HSET", key]
    for k, v in fields.items():
        args += [k, v]
    return resp(*args) + expire(key)


def put(key, value):
    return resp("SET", key, value) + expire(key)


def api_key(rnd, i, plain):
    kid = str(uuid.UUID(int=rnd.getrandbits(128), version=4))
    digest = hashlib.sha256(f"cr_{kid}".encode()).hexdigest()
    release = i % 3  # 0: HEAD, 1: v1.1.156 (old permissions, fewer fields), 2: corrupted permissions
    name, description = f"team-{i}", "" if i % 4 else "a key with\ttabs and\nnewlines \\ and backslashes"
    if not plain and i % 5 == 1:
        name = NAMES[i % len(NAMES)].format(i)
        description = "描述：生产环境的密钥 🔑𝄞 " + description
    if not plain and i < 1000 and i % 250 == 7:
        description = LONG
    fields = {
        "id": kid,
        "name": name,
        "description": description,
        "apiKey": digest,
        "tokenLimit": 0,
        "concurrencyLimit": i % 5,
        "rateLimitWindow": 60 if i % 7 == 0 else 0,
        "rateLimitRequests": 0,
        "rateLimitCost": 0,
        "isActive": "false" if i % 11 == 0 else "true",
        "permissions": ['["claude"]', "all", "claude,openai"][release],
        "claudeAccountId": f"group:{uuid.UUID(int=i, version=4)}" if i % 5 == 0 else "",
        "geminiAccountId": "",
        "restrictedModels": "[]",
        "allowedClients": '["claude_code"]' if i % 2 else "[]",
        "dailyCostLimit": 0,
        "totalCostLimit": 50,
        "weeklyOpusCostLimit": 0,
        "tags": '["vip"]' if i % 3 == 0 else "[]",
        "expirationMode": "fixed",
        "isActivated": "true",
        "activatedAt": "2026-01-02T03:04:05.000Z",
        "expiresAt": "",
        "createdAt": "2026-01-02T03:04:05.000Z",
        "lastUsedAt": "2026-03-01T10:00:00.000Z",
        "createdBy": "admin",
        "userId": "",
        "userUsername": "",
        "icon": "",
    }
    if release == 0:
        fields.update({"serviceRates": "{}", "weeklyResetDay": 1, "weeklyResetHour": 0, "activationUnit": "days",
                       "droidAccountId": "", "enableOpenAIResponsesCodexAdaptation": "false"})
    if i % 13 == 0:
        fields.update({"isDeleted": "true", "deletedAt": "2026-02-01T00:00:00.000Z", "deletedBy": "admin", "deletedByType": "admin"})
    return kid, digest, fields


def bucket(rnd, long_context=False, costs=False, tokens=True):
    inp, outp = rnd.randint(0, 5000), rnd.randint(0, 2000)
    cc, cr = rnd.randint(0, 1000), rnd.randint(0, 9000)
    f = {"inputTokens": inp, "outputTokens": outp, "cacheCreateTokens": cc, "cacheReadTokens": cr,
         "allTokens": inp + outp + cc + cr, "requests": rnd.randint(1, 40), "ephemeral5mTokens": 0, "ephemeral1hTokens": 0}
    if tokens:
        f["tokens"] = inp + outp
    if long_context:
        f.update({"longContextInputTokens": 0, "longContextOutputTokens": 0, "longContextRequests": 0})
    if costs:
        f.update({"ratedCostMicro": rnd.randint(0, 10**6), "realCostMicro": rnd.randint(0, 10**6)})
    return f


def per_key(rnd, kid, light):
    out = []
    total = {"totalTokens": 120034, "totalInputTokens": 100000, "totalOutputTokens": 20034, "totalCacheCreateTokens": 0,
             "totalCacheReadTokens": 500000, "totalAllTokens": 620034, "totalRequests": rnd.randint(1, 900)}
    out.append(hset(f"usage:{kid}", total))
    out.append(put(f"usage:cost:total:{kid}", f"{rnd.random() * 40:.6f}"))
    if light:
        return out
    day, model = rnd.choice(DAYS), rnd.choice(MODELS)
    out.append(hset(f"usage:daily:{kid}:{day}", bucket(rnd, long_context=True)))
    out.append(hset(f"usage:monthly:{kid}:2026-03", bucket(rnd)))
    out.append(hset(f"usage:hourly:{kid}:{day}:10", bucket(rnd)))
    out.append(hset(f"usage:{kid}:model:daily:{model}:{day}", bucket(rnd, costs=True, tokens=False)))
    out.append(hset(f"usage:{kid}:model:monthly:{model}:2026-03", bucket(rnd, costs=True, tokens=False)))
    out.append(hset(f"usage:{kid}:model:hourly:{model}:{day}:10", bucket(rnd, costs=True, tokens=False)))
    out.append(hset(f"usage:{kid}:model:alltime:{model}", bucket(rnd, costs=True, tokens=False)))
    out.append(put(f"usage:cost:daily:{kid}:{day}", "0.30000000000000004"))
    out.append(put(f"usage:cost:monthly:{kid}:2026-03", f"{rnd.random():.6f}"))
    out.append(put(f"usage:cost:hourly:{kid}:{day}:10", f"{rnd.random():.6f}"))
    out.append(put(f"usage:cost:real:total:{kid}", f"{rnd.random() * 30:.6f}"))
    out.append(put(f"usage:opus:weekly:{kid}:2026-W09" if rnd.random() < 0.5 else f"usage:opus:weekly:{kid}:2026-02-23T00", f"{rnd.random():.4f}"))
    out.append(put(f"usage:opus:total:{kid}", f"{rnd.random() * 9:.4f}"))
    out.append(resp("RPUSH", f"usage:records:{kid}", json.dumps({"timestamp": "2026-03-01T10:00:00.000Z", "model": model})) + expire(f"usage:records:{kid}"))
    # ephemeral
    out.append(resp("ZADD", f"concurrency:{kid}", 1767225600000, f"req-{rnd.getrandbits(32)}"))
    out.append(resp("SET", f"rate_limit:window_start:{kid}", 1767225600000, "PX", 3600000))
    return out


def fixed(rnd, ids, plain, kept):
    out = []
    account_ids = {}
    hash_types = {
        "claude:account:": {"accessToken": "3f9c:a81e", "refreshToken": "77d0:c2b4", "expiresAt": "1767225600000",
                            "scopes": "user:inference user:profile", "proxy": '{"type":"socks5","host":"10.0.0.2","port":1080}',
                            "accountType": "shared", "priority": "50", "schedulable": "true", "status": "active",
                            "subscriptionInfo": '{"plan":"max"}', "rateLimitStatus": "", "sessionWindowStart": ""},
        "claude_console_account:": {"apiKey": "aa:bb", "apiUrl": "https://console.example", "supportedModels": '["claude-sonnet-4"]', "status": "created"},
        "gemini_account:": {"geminiOauth": "cc:dd", "supportedModels": "gemini-2.5-pro,gemini-2.5-flash", "status": "temp_error"},
        "gemini_api_account:": {"apiKey": "ee:ff", "status": "active"},
        "openai:account:": {"idToken": "11:22", "openaiOauth": "33:44", "email": "55:66", "planType": "plus", "status": "unauthorized"},
        "openai_responses_account:": {"apiKey": "77:88", "status": "active"},
        "azure_openai:account:": {"apiKey": "99:00", "azureEndpoint": "https://x.openai.azure.com", "deploymentName": "gpt", "status": "active"},
        "ccr_account:": {"apiKey": "ab:cd", "status": "active"},
        "droid:account:": {"refreshToken": "ef:01", "apiKeys": '[{"id":"k1","hash":"h","encryptedKey":"23:45","status":"active"}]', "status": "active"},
    }
    for prefix, extra in hash_types.items():
        for n in range(3):
            aid = str(uuid.UUID(int=rnd.getrandbits(128), version=4))
            account_ids.setdefault(prefix, []).append(aid)
            f = {"id": aid, "name": f"{prefix.strip(':')}-{n}", "description": "", "isActive": "true",
                 "createdAt": "2026-01-01T00:00:00.000Z", "lastUsedAt": "", "platform": prefix.split(":")[0].split("_")[0]}
            f.update(extra)
            if not plain and n == 0:
                f["name"] = NAMES[len(account_ids) % len(NAMES)].format(prefix.strip(":"))
                kept.setdefault(prefix + aid, {})["name"] = f["name"].encode()
            if not plain and n == 1 and prefix == "claude:account:":
                # Ciphertext written as raw bytes (a Buffer), not as the relay's "iv:hex" text.
                f["accessToken"] = b"\x00\xff" + hashlib.sha256(aid.encode()).digest() + b"\x00"
                kept.setdefault(prefix + aid, {})["accessToken"] = f["accessToken"]
            if not plain and n == 2 and prefix == "gemini_account:":
                f["geminiOauth"] = b"cc:dd\x00"
                kept.setdefault(prefix + aid, {})["geminiOauth"] = f["geminiOauth"]
            out.append(hset(prefix + aid, f))
            out.append(resp("SADD", prefix + "index", aid))
    for n in range(3):
        aid = str(uuid.UUID(int=rnd.getrandbits(128), version=4))
        bedrock = {"id": aid, "name": f"bedrock-{n}", "region": "us-east-1", "isActive": True, "schedulable": True, "priority": 50,
                   "awsCredentials": {"encrypted": "cd34", "iv": "ab12"}, "createdAt": "2026-01-01T00:00:00.000Z"}
        out.append(put(f"bedrock_account:{aid}", json.dumps(bedrock)))
    gid = str(uuid.UUID(int=5, version=4))
    out.append(hset(f"account_group:{gid}", {"id": gid, "name": "pool-a" if plain else "资源池-α 😀", "platform": "claude", "description": "",
                                              "createdAt": "2026-01-01T00:00:00.000Z", "updatedAt": "2026-01-02T00:00:00.000Z"}))
    out.append(resp("SADD", "account_groups", gid))
    out.append(resp("SADD", f"account_group_members:{gid}", *account_ids["claude:account:"]))
    out.append(resp("SADD", f"account_groups_reverse:claude:{account_ids['claude:account:'][0]}", gid))
    for n in range(3):
        user_id = f"{rnd.getrandbits(128):032x}"
        user = {"id": user_id, "username": f"user{n}", "email": f"user{n}@example.com",
                "displayName": f"User {n}" if plain else f"用户 {n} 👤𠀀", "role": "user",
                "isActive": n != 2, "createdAt": "2026-01-01T00:00:00.000Z", "updatedAt": "2026-01-01T00:00:00.000Z",
                "lastLoginAt": "", "apiKeyCount": 1, "totalUsage": {"requests": 3, "inputTokens": 10, "outputTokens": 5, "totalCost": 0.01}}
        out.append(put(f"user:{user_id}", json.dumps(user, ensure_ascii=False)))
        out.append(put(f"username:user{n}", user_id))
        out.append(resp("SADD", "user:index", user_id))
        out.append(resp("SET", f"user_session:{rnd.getrandbits(256):064x}", json.dumps({"userId": user_id}), "EX", 86400))
    for model in MODELS:
        out.append(hset(f"usage:model:daily:{model}:{DAYS[2]}", bucket(rnd, tokens=False)))
        out.append(hset(f"usage:model:monthly:{model}:2026-03", bucket(rnd, tokens=False)))
        out.append(hset(f"usage:model:hourly:{model}:{DAYS[2]}:10", bucket(rnd, tokens=False)))
    out.append(hset("usage:global:total", bucket(rnd, tokens=False)))
    out.append(hset(f"usage:global:daily:{DAYS[2]}", bucket(rnd, tokens=False)))
    out.append(hset("usage:global:monthly:2026-03", bucket(rnd, tokens=False)))
    acc = account_ids["claude:account:"][0]
    out.append(hset(f"account_usage:{acc}", {"totalTokens": 10, "totalInputTokens": 7, "totalOutputTokens": 3, "totalRequests": 2}))
    out.append(hset(f"account_usage:daily:{acc}:{DAYS[2]}", bucket(rnd)))
    out.append(hset(f"account_usage:monthly:{acc}:2026-03", bucket(rnd)))
    out.append(hset(f"account_usage:hourly:{acc}:{DAYS[2]}:10", bucket(rnd)))
    out.append(hset(f"account_usage:model:daily:{acc}:{MODELS[0]}:{DAYS[2]}", bucket(rnd, tokens=False)))
    for key, value in [("webhook_config:default", {"enabled": True, "platforms": []}), ("claude_relay_config", {"sessionBindingTtlDays": 7}),
                       ("system:service_rates", {"claude": 1.0}), ("system:quota_card_limits", {"max": 10}), ("oem:settings", {"siteName": "Relay"}),
                       (f"account_balance_script:claude:{acc}", {"script": "return 1"})]:
        out.append(put(key, json.dumps(value)))
    card = str(uuid.UUID(int=7, version=4))
    out.append(hset(f"quota_card:{card}", {"id": card, "code": "CARD-0001", "status": "redeemed", "createdAt": "2026-01-05T00:00:00.000Z", "amount": "10"}))
    out.append(put("quota_card_code:CARD-0001", card))
    out.append(resp("SADD", "quota_cards:all", card))
    redemption = str(uuid.UUID(int=8, version=4))
    out.append(hset(f"redemption:{redemption}", {"id": redemption, "cardId": card, "apiKeyId": ids[0] if ids else "", "userId": "",
                                                 "redeemedAt": "2026-01-06T00:00:00.000Z"}))
    out.append(resp("SADD", "redemptions:all", redemption))
    # ephemeral and derived keys that must not be migrated
    out.append(hset(f"session:{rnd.getrandbits(256):064x}", {"username": "admin", "loginTime": "2026-03-01T00:00:00.000Z"}))
    out.append(hset("session:admin_credentials", {"username": "admin", "passwordHash": "$2b$10$x"}))
    out.append(resp("SET", f"sticky_session:{rnd.getrandbits(64):016x}", acc, "EX", 3600))
    out.append(hset(f"oauth:{rnd.getrandbits(64):016x}", {"codeVerifier": "v"}))
    out.append(resp("SET", f"token_refresh_lock:claude:{acc}", "1", "PX", 60000))
    out.append(hset("system:metrics:minute:29421360", {"requests": 3}))
    out.append(put("apikey:index:version", "2"))
    out.append(put("system:migrated:version", "1.1.314"))
    return out


def hostile():
    """Records that no row can hold as they are, each with the reason a migration must give
    when it rejects the key (escaped as runner shows a key name that is not text)."""
    base = {"apiKey": "feed", "createdAt": "2026-01-01T00:00:00.000Z", "name": "hostile", "description": ""}
    records = [
        ("apikey:00000000-0000-4000-8000-0000000000a1", {**base, "name": b"team-\xff\xfe"},
         "column `name`: the field is not UTF-8 text"),
        ("apikey:00000000-0000-4000-8000-0000000000a2", {**base, "description": b"before\x00after"},
         "column `description`: the field holds a NUL byte"),
        ("usage:cost:total:00000000-0000-4000-8000-0000000000a3", b"\x00\x01\xff",
         "column `amount_usd`: the value is not UTF-8 text"),
        (b"claude:account:bad-\xc3\x28", {"name": "x"}, "the key's name (shown escaped) is not UTF-8 text"),
        ("claude:account:00000000-0000-4000-8000-0000000000a5", {"name": "x", b"\xfe\xffname": "y"},
         "field name `\\xfe\\xffname` is not UTF-8 text"),
        ("user:" + "a5" * 16, json.dumps({"username": "nul\u0000user"}), "JSON with a NUL character"),
        ("bedrock_account:hostile-latin1", b'{"name":"caf\xe9"}', "not JSON: not UTF-8 text"),
    ]
    out, rejected = [], {}
    for key, value, reason in records:
        out.append(hset(key, value) if isinstance(value, dict) else put(key, value))
        # runner shows a name that is not text escaped, as backslashreplace does this one.
        rejected[key.decode(errors="backslashreplace") if isinstance(key, bytes) else key] = reason
    return out, rejected


def churn(pipe, hashes, seconds, rnd):
    """For `seconds`: deletes 2 % of the API key hashes, and re-creates them (same fields, a
    fresh TTL) a moment later, over and over."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        picked = rnd.sample(hashes, max(1, len(hashes) // 50))
        pipe.stdin.write(b"".join(resp("DEL", key) for key, _ in picked))
        pipe.stdin.flush()
        time.sleep(0.005)
        pipe.stdin.write(b"".join(write for _, write in picked))
        pipe.stdin.flush()
        time.sleep(0.005)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True, help="redis://:password@host:port/db")
    parser.add_argument("--api-keys", type=int, default=1000)
    parser.add_argument("--light", action="store_true", help="per key: the hash, lifetime usage and cost only")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--plain", action="store_true", help="no non-ASCII, long or binary values")
    parser.add_argument("--hostile", action="store_true", help="add records a migration must reject by key")
    parser.add_argument("--manifest", help="write the kept byte values and the expected rejects here, as JSON")
    parser.add_argument("--churn", type=float, metavar="SECONDS", help="delete and re-create keys for this long")
    args = parser.parse_args()
    rnd = random.Random(args.seed)
    url = urllib.parse.urlparse(args.url)
    db = url.path.strip("/") or "0"
    env = dict(os.environ)
    if url.password:  # else REDISCLI_AUTH from the environment, as redis-cli reads it
        env["REDISCLI_AUTH"] = urllib.parse.unquote(url.password)
    pipe = subprocess.Popen(["redis-cli", "-h", url.hostname, "-p", str(url.port or 6379), "-n", db, "--pipe"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env)
    ids, hashes, kept = [], [], {}
    chunk = []
    for i in range(args.api_keys):
        kid, digest, fields = api_key(rnd, i, args.plain)
        ids.append(kid)
        key = f"apikey:{kid}"
        if i < 1000 and (fields["name"] != f"team-{i}" or len(fields["description"]) > 1000):
            kept[key] = {"name": fields["name"].encode(), "description": fields["description"].encode()}
        if args.churn:
            hashes.append((key, hset(key, fields)))
        else:
            chunk.append(hset(key, fields))
        chunk.append(resp("HSET", "apikey:hash_map", digest, kid))
        chunk.append(resp("SADD", "apikey:idx:all", kid))
        chunk.extend(per_key(rnd, kid, args.light))
        if args.churn:
            chunk = []  # generated only to draw the same ids: the rest stays as seeded
        elif len(chunk) > 20000:
            pipe.stdin.write(b"".join(chunk))
            chunk = []
    if args.churn:
        churn(pipe, hashes, args.churn, rnd)
    else:
        chunk.extend(fixed(rnd, ids, args.plain, kept))
        rejected = {}
        if args.hostile:
            records, rejected = hostile()
            chunk.extend(records)
        pipe.stdin.write(b"".join(chunk))
        if args.manifest:
            with open(args.manifest, "w") as f:
                json.dump({"kept": {k: {n: v.hex() for n, v in fs.items()} for k, fs in kept.items()},
                           "rejected": rejected}, f, ensure_ascii=False, indent=1)
    pipe.stdin.close()
    report = pipe.stdout.read().decode()
    if pipe.wait() != 0 or "errors: 0" not in report:
        sys.exit(f"redis-cli --pipe failed: {report}")
    print(report.strip().splitlines()[-1])


if __name__ == "__main__":
    main()
