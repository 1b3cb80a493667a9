// An independent OPC UA probe with node-opcua's own client (not kentei's code); prints one JSON object
// with the same facts as tests/third_party/opcua_probe.py (session_over_none and read_before_activation
// come from its --service-level: node-opcua's client will not try what they need).
//
//   node probe.js --url URL --pki KENTEI_PKI_DIR --state DIR [--user NAME:PASSWORD]
"use strict";
const fs = require("fs");
const path = require("path");
const {
    OPCUAClient,
    OPCUACertificateManager,
    MessageSecurityMode,
    SecurityPolicy,
    UserTokenType,
    AttributeIds,
} = require("node-opcua");
const { X509Certificate } = require("crypto");

const TIMEOUT_MS = 4000;
const WRONG_PASSWORD = "corpus-wrong-password";
const UNKNOWN_USER = "corpus-no-such-user";

function parse(argv) {
    const args = {};
    for (let i = 0; i < argv.length; i += 2) args[argv[i].replace(/^--/, "")] = argv[i + 1];
    return args;
}

const args = parse(process.argv.slice(2));
const index = JSON.parse(fs.readFileSync(path.join(args.pki, "index.json"), "utf8"));
const user = args.user ? [args.user.split(":")[0], args.user.split(":").slice(1).join(":")] : null;
// One client store for every attempt (a store of its own makes node-opcua create a key pair):
// it accepts the server's certificate (the kentei CA's), and nothing in it is shared with the server.
let clientStore = null;

// The certificate and, unless it is self-signed, its issuer's after it: what a client that sends its
// chain presents (node-opcua refuses a CA-issued leaf alone with BadCertificateChainIncomplete).
function withChain(entry) {
    const leaf = path.join(args.pki, index.entries[entry].cert_pem);
    // Self-signed: no issuer; chain-incomplete: its issuer is withheld on purpose (the case).
    if (entry === "client-self-signed" || entry === "client-chain-incomplete") return leaf;
    const chain = path.join(args.state, `${entry}-chain.pem`);
    const issuers = { "client-unknown-issuer": "unknown-ca", "client-issuer-untrusted": "issuer-only-ca" };
    const issuer = issuers[entry] || "ca";
    const ca = path.join(args.pki, index.entries[issuer].cert_pem);
    fs.mkdirSync(args.state, { recursive: true });
    fs.writeFileSync(chain, fs.readFileSync(leaf, "utf8") + fs.readFileSync(ca, "utf8"));
    return chain;
}

function client(mode, policy, entry) {
    const options = {
        securityMode: mode,
        securityPolicy: policy,
        endpointMustExist: false,
        connectionStrategy: { maxRetry: 0, initialDelay: 100, maxDelay: 200 },
        requestedSessionTimeout: 60000,
        defaultTransactionTimeout: TIMEOUT_MS,
        applicationUri: index.client_application_uri,
        clientCertificateManager: clientStore,
    };
    if (entry) {
        options.certificateFile = withChain(entry);
        options.privateKeyFile = path.join(args.pki, index.entries[entry].key_pem);
    }
    return OPCUAClient.create(options);
}

async function withTimeout(promise, what) {
    let timer;
    const timeout = new Promise((_, reject) => {
        timer = setTimeout(() => reject(new Error(`${what}: no answer within ${TIMEOUT_MS} ms`)), TIMEOUT_MS * 2);
    });
    try {
        return await Promise.race([promise, timeout]);
    } finally {
        clearTimeout(timer);
    }
}

// A connection that never reached the server (node-opcua's findEndpoint could not connect: seen
// on a loaded machine in the first round of a permissive server) is the probe's failure, not an
// answer: tried once more. A refusal the server sent is never retried.
async function session(mode, policy, entry, login) {
    const answer = await sessionOnce(mode, policy, entry, login);
    if (!answer.includes("Fail to connect to server")) return answer;
    return sessionOnce(mode, policy, entry, login);
}

async function sessionOnce(mode, policy, entry, login) {
    const c = client(mode, policy, entry);
    // node-opcua states its certificate's SAN URI as the ApplicationUri in CreateSession: for
    // wrong-uri, the client states the URI it was configured with, as the case needs.
    if (entry === "client-wrong-uri") c._getApplicationUri = () => index.client_application_uri;
    try {
        await withTimeout(c.connect(args.url), "connect");
        const identity = login
            ? { type: UserTokenType.UserName, userName: login[0], password: login[1] }
            : { type: UserTokenType.Anonymous };
        const s = await withTimeout(c.createSession(identity), "session");
        const value = await s.read({ nodeId: "i=2259", attributeId: AttributeIds.Value });
        await s.close();
        if (!value.statusCode.isGood()) return `refused at Read: ${value.statusCode.name}`;
        return `activated: ServerState ${value.value.value}`;
    } catch (err) {
        return `refused: ${String(err.message || err).split("\n")[0]}`.slice(0, 300);
    } finally {
        await c.disconnect().catch(() => {});
    }
}

async function main() {
    clientStore = new OPCUACertificateManager({
        rootFolder: path.join(args.state, "client-pki"),
        automaticallyAcceptUnknownCertificate: true,
    });
    await clientStore.initialize();
    const discovery = client(MessageSecurityMode.None, SecurityPolicy.None, null);
    await withTimeout(discovery.connect(args.url), "connect");
    const endpoints = await discovery.getEndpoints();
    await discovery.disconnect();
    const tokens = new Set(endpoints.flatMap((e) => (e.userIdentityTokens || []).map((t) => t.tokenType)));
    const anonymous = tokens.has(UserTokenType.Anonymous);
    const login = anonymous ? null : user;
    const out = {
        endpoints: endpoints
            .map((e) => `${e.securityPolicyUri.split("#").pop()}/${MessageSecurityMode[e.securityMode]}`)
            .sort(),
        none_endpoint: endpoints.some((e) => e.securityMode === MessageSecurityMode.None),
        deprecated_policy: endpoints.some((e) => /#Basic(128Rsa15|256)$/.test(e.securityPolicyUri)),
        anonymous_offered: anonymous,
        username_offered: tokens.has(UserTokenType.UserName),
        // A UserName token a client would send in clear: on a None or Sign endpoint, with no
        // encrypting policy of its own (Part 4 7.36.4: the token's policy, else the endpoint's).
        clear_username_policy: endpoints.some(
            (e) =>
                e.securityMode !== MessageSecurityMode.SignAndEncrypt &&
                (e.userIdentityTokens || []).some(
                    (t) =>
                        t.tokenType === UserTokenType.UserName &&
                        (t.securityPolicyUri || e.securityPolicyUri).endsWith("#None"),
                ),
        ),
    };
    const withCert = endpoints.find((e) => e.serverCertificate && e.serverCertificate.length);
    // The endpoint may carry the chain (leaf first): X509Certificate reads the first certificate.
    const leaf = new X509Certificate(withCert.serverCertificate);
    out.server_cert_rsa_bits = leaf.publicKey.asymmetricKeyDetails.modulusLength || 0;
    out.server_cert_uri_matches = (leaf.subjectAltName || "")
        .split(", ")
        .includes(`URI:${withCert.server.applicationUri}`);
    const E = MessageSecurityMode.SignAndEncrypt;
    const P = SecurityPolicy.Basic256Sha256;
    const attempts = {
        anonymous_session: [E, P, "client", null],
        default_pair_session: [E, P, "client", ["admin", "admin"]],
        wrong_password_session: [E, P, "client", [(user || ["admin"])[0], WRONG_PASSWORD]],
        unknown_user_session: [E, P, "client", [UNKNOWN_USER, WRONG_PASSWORD]],
        trusted_cert_session: [E, P, "client", login],
        self_signed_cert_session: [E, P, "client-self-signed", login],
        expired_cert_session: [E, P, "client-expired", login],
        revoked_cert_session: [E, P, "client-revoked", login],
        unknown_issuer_cert_session: [E, P, "client-unknown-issuer", login],
    };
    // The certificate-validation breadth of issue 14, in a second round: fourteen sessions at
    // once made a permissive server drop some of the first ones.
    const breadth = {
        no_digital_signature_cert_session: [E, P, "client-no-digital-signature", login],
        no_key_encipherment_cert_session: [E, P, "client-no-key-encipherment", login],
        sha1_rsa1024_cert_session: [E, P, "client-sha1-rsa1024", login],
        chain_incomplete_cert_session: [E, P, "client-chain-incomplete", login],
    };
    // More of issue 14, two rounds of five (each leaf with its issuer, as above).
    const leaves = {
        bad_signature_cert_session: [E, P, "client-bad-signature", login],
        ca_as_leaf_cert_session: [E, P, "client-ca-as-leaf", login],
        not_yet_valid_cert_session: [E, P, "client-not-yet-valid", login],
        weak_key_cert_session: [E, P, "client-rsa1024", login],
        sha1_cert_session: [E, P, "client-sha1", login],
    };
    const more = {
        wrong_uri_cert_session: [E, P, "client-wrong-uri", login],
        rsa4096_cert_session: [E, P, "client-rsa4096", login],
        sha1_rsa4096_cert_session: [E, P, "client-sha1-rsa4096", login],
        unknown_critical_extension_cert_session: [E, P, "client-unknown-critical-extension", login],
        issuer_untrusted_cert_session: [E, P, "client-issuer-untrusted", login],
    };
    // The attempts of a round are independent: made at once, it costs the slowest, not their sum.
    for (const round of [attempts, breadth, leaves, more]) {
        const answers = await Promise.all(Object.values(round).map((attempt) => session(...attempt)));
        Object.keys(round).forEach((name, i) => {
            out[name] = answers[i].startsWith("activated");
            out[`${name}_detail`] = answers[i];
        });
    }
    process.stdout.write(`${JSON.stringify(out)}\n`);
}

main()
    .then(() => process.exit(0))
    .catch((err) => {
        process.stderr.write(`${err.stack || err}\n`);
        process.exit(1);
    });
