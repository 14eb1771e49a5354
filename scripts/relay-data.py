#!/usr/bin/env python3
"""Writes a realistic Claude Relay Service dataset into Redis (the layout of
../shared/relay-data-model.md): API keys in the formats of several releases with their usage
and cost keys, accounts of every type, groups, users, config singletons, quota cards and
redemptions, plus the ephemeral and derived keys a migration must skip.

    scripts/relay-data.py --url redis://:pw@127.0.0.1:16379/3 --api-keys 1000 [--light] [--seed 7]

Commands are streamed to `redis-cli --pipe` (no Python packages needed). --light writes, per
API key, only its hash, its lifetime usage and its lifetime cost (the benchmark's shape).
"""

import argparse
import hashlib
import json
import os
import random
import subprocess
import sys
import urllib.parse
import uuid

MODELS = ["claude-sonnet-4-20250514", "claude-opus-4-1-20250805", "claude-3-5-haiku-20241022"]
DAYS = ["2026-02-27", "2026-02-28", "2026-03-01"]


def resp(*args):
    out = [f"*{len(args)}\r\n".encode()]
    for a in args:
        b = a if isinstance(a, bytes) else str(a).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(b), b))
    return b"".join(out)


def hset(key, fields):
    args = ["HSET", key]
    for k, v in fields.items():
        args += [k, v]
    return resp(*args)


def api_key(rnd, i):
    kid = str(uuid.UUID(int=rnd.getrandbits(128), version=4))
    digest = hashlib.sha256(f"cr_{kid}".encode()).hexdigest()
    release = i % 3  # 0: HEAD, 1: v1.1.156 (old permissions, fewer fields), 2: corrupted permissions
    fields = {
        "id": kid,
        "name": f"team-{i}",
        "description": "" if i % 4 else "a key with\ttabs and\nnewlines \\ and backslashes",
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
    out.append(resp("SET", f"usage:cost:total:{kid}", f"{rnd.random() * 40:.6f}"))
    if light:
        return out
    day, model = rnd.choice(DAYS), rnd.choice(MODELS)
    out.append(hset(f"usage:daily:{kid}:{day}", bucket(rnd, long_context=True)))
    out.append(resp("EXPIRE", f"usage:daily:{kid}:{day}", 32 * 86400))
    out.append(hset(f"usage:monthly:{kid}:2026-03", bucket(rnd)))
    out.append(hset(f"usage:hourly:{kid}:{day}:10", bucket(rnd)))
    out.append(hset(f"usage:{kid}:model:daily:{model}:{day}", bucket(rnd, costs=True, tokens=False)))
    out.append(hset(f"usage:{kid}:model:monthly:{model}:2026-03", bucket(rnd, costs=True, tokens=False)))
    out.append(hset(f"usage:{kid}:model:hourly:{model}:{day}:10", bucket(rnd, costs=True, tokens=False)))
    out.append(hset(f"usage:{kid}:model:alltime:{model}", bucket(rnd, costs=True, tokens=False)))
    out.append(resp("SET", f"usage:cost:daily:{kid}:{day}", "0.30000000000000004"))
    out.append(resp("SET", f"usage:cost:monthly:{kid}:2026-03", f"{rnd.random():.6f}"))
    out.append(resp("SET", f"usage:cost:hourly:{kid}:{day}:10", f"{rnd.random():.6f}"))
    out.append(resp("SET", f"usage:cost:real:total:{kid}", f"{rnd.random() * 30:.6f}"))
    out.append(resp("SET", f"usage:opus:weekly:{kid}:2026-W09" if rnd.random() < 0.5 else f"usage:opus:weekly:{kid}:2026-02-23T00", f"{rnd.random():.4f}"))
    out.append(resp("SET", f"usage:opus:total:{kid}", f"{rnd.random() * 9:.4f}"))
    out.append(resp("RPUSH", f"usage:records:{kid}", json.dumps({"timestamp": "2026-03-01T10:00:00.000Z", "model": model})))
    # ephemeral
    out.append(resp("ZADD", f"concurrency:{kid}", 1767225600000, f"req-{rnd.getrandbits(32)}"))
    out.append(resp("SET", f"rate_limit:window_start:{kid}", 1767225600000, "PX", 3600000))
    return out


def fixed(rnd, ids):
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
            out.append(hset(prefix + aid, f))
            out.append(resp("SADD", prefix + "index", aid))
    for n in range(3):
        aid = str(uuid.UUID(int=rnd.getrandbits(128), version=4))
        bedrock = {"id": aid, "name": f"bedrock-{n}", "region": "us-east-1", "isActive": True, "schedulable": True, "priority": 50,
                   "awsCredentials": {"encrypted": "cd34", "iv": "ab12"}, "createdAt": "2026-01-01T00:00:00.000Z"}
        out.append(resp("SET", f"bedrock_account:{aid}", json.dumps(bedrock)))
    gid = str(uuid.UUID(int=5, version=4))
    out.append(hset(f"account_group:{gid}", {"id": gid, "name": "pool-a", "platform": "claude", "description": "",
                                              "createdAt": "2026-01-01T00:00:00.000Z", "updatedAt": "2026-01-02T00:00:00.000Z"}))
    out.append(resp("SADD", "account_groups", gid))
    out.append(resp("SADD", f"account_group_members:{gid}", *account_ids["claude:account:"]))
    out.append(resp("SADD", f"account_groups_reverse:claude:{account_ids['claude:account:'][0]}", gid))
    for n in range(3):
        user_id = f"{rnd.getrandbits(128):032x}"
        user = {"id": user_id, "username": f"user{n}", "email": f"user{n}@example.com", "displayName": f"User {n}", "role": "user",
                "isActive": n != 2, "createdAt": "2026-01-01T00:00:00.000Z", "updatedAt": "2026-01-01T00:00:00.000Z",
                "lastLoginAt": "", "apiKeyCount": 1, "totalUsage": {"requests": 3, "inputTokens": 10, "outputTokens": 5, "totalCost": 0.01}}
        out.append(resp("SET", f"user:{user_id}", json.dumps(user)))
        out.append(resp("SET", f"username:user{n}", user_id))
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
        out.append(resp("SET", key, json.dumps(value)))
    card = str(uuid.UUID(int=7, version=4))
    out.append(hset(f"quota_card:{card}", {"id": card, "code": "CARD-0001", "status": "redeemed", "createdAt": "2026-01-05T00:00:00.000Z", "amount": "10"}))
    out.append(resp("SET", "quota_card_code:CARD-0001", card))
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
    out.append(resp("SET", "apikey:index:version", "2"))
    out.append(resp("SET", "system:migrated:version", "1.1.314"))
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True, help="redis://:password@host:port/db")
    parser.add_argument("--api-keys", type=int, default=1000)
    parser.add_argument("--light", action="store_true", help="per key: the hash, lifetime usage and cost only")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    rnd = random.Random(args.seed)
    url = urllib.parse.urlparse(args.url)
    db = url.path.strip("/") or "0"
    env = dict(os.environ, REDISCLI_AUTH=urllib.parse.unquote(url.password or ""))
    pipe = subprocess.Popen(["redis-cli", "-h", url.hostname, "-p", str(url.port or 6379), "-n", db, "--pipe"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env)
    ids = []
    chunk = []
    for i in range(args.api_keys):
        kid, digest, fields = api_key(rnd, i)
        ids.append(kid)
        chunk.append(hset(f"apikey:{kid}", fields))
        chunk.append(resp("EXPIRE", f"apikey:{kid}", 365 * 86400))
        chunk.append(resp("HSET", "apikey:hash_map", digest, kid))
        chunk.append(resp("SADD", "apikey:idx:all", kid))
        chunk.extend(per_key(rnd, kid, args.light))
        if len(chunk) > 20000:
            pipe.stdin.write(b"".join(chunk))
            chunk = []
    chunk.extend(fixed(rnd, ids))
    pipe.stdin.write(b"".join(chunk))
    pipe.stdin.close()
    report = pipe.stdout.read().decode()
    if pipe.wait() != 0 or "errors: 0" not in report:
        sys.exit(f"redis-cli --pipe failed: {report}")
    print(report.strip().splitlines()[-1])


if __name__ == "__main__":
    main()
