// A node-opcua server as a third-party DUT for kentei's corpus; prints `READY <url>` once it serves.
//
//   node server.js --port N --pki KENTEI_PKI_DIR --state DIR --config permissive|strict [--user NAME:PASSWORD]...
//                  [--trust lab|none]
//
// permissive: None, Sign and SignAndEncrypt with every policy node-opcua still has, Anonymous,
//   any user name with any password, and every client certificate accepted (as many devices ship).
// strict: SignAndEncrypt with Basic256Sha256 / Aes128_Sha256_RsaOaep / Aes256_Sha256_RsaPss only, no
//   Anonymous, only the listed users, and a certificate store that trusts the kentei test CA (with
//   its CRL) and puts every unknown client certificate into <state>/pki/rejected.
// --trust none (strict): the kentei test CA is not installed: the server trusts only what its
//   <state>/pki folder (OPC UA Part 12 layout) holds, as a DUT does before a lab onboards it.
"use strict";
const fs = require("fs");
const path = require("path");
const {
    OPCUAServer,
    OPCUACertificateManager,
    SecurityPolicy,
    MessageSecurityMode,
} = require("node-opcua");

function parse(argv) {
    const args = { users: [] };
    for (let i = 0; i < argv.length; i += 2) {
        const [key, value] = [argv[i], argv[i + 1]];
        if (key === "--user") args.users.push(value);
        else args[key.replace(/^--/, "")] = value;
    }
    for (const key of ["port", "pki", "state", "config"]) {
        if (!args[key]) throw new Error(`--${key} is required`);
    }
    return args;
}

function copyInto(folder, file, name) {
    fs.mkdirSync(folder, { recursive: true });
    fs.copyFileSync(file, path.join(folder, name));
}

async function main() {
    const args = parse(process.argv.slice(2));
    const strict = args.config === "strict";
    const index = JSON.parse(fs.readFileSync(path.join(args.pki, "index.json"), "utf8"));
    const entry = (name) => index.entries[name];
    const root = path.join(args.state, "pki");
    const certificateManager = new OPCUACertificateManager({
        rootFolder: root,
        automaticallyAcceptUnknownCertificate: !strict,
    });
    await certificateManager.initialize();
    if (strict && args.trust !== "none") {
        // The lab's trust list: the kentei test CA and its CRL, as trusted and as issuer.
        const ca = path.join(args.pki, entry("ca").cert_der);
        const crl = path.join(args.pki, index.crl_der);
        for (const kind of ["trusted", "issuers"]) {
            copyInto(path.join(root, kind, "certs"), ca, "kentei-ca.der");
            copyInto(path.join(root, kind, "crl"), crl, "kentei-ca.crl");
        }
        await certificateManager.reloadCertificates?.();
    }
    // The certificate with its issuer chain, as node-opcua asks for a CA-signed one (else clients
    // that build the chain refuse with BadCertificateChainIncomplete).
    const chain = path.join(args.state, "server-chain.pem");
    fs.writeFileSync(
        chain,
        fs.readFileSync(path.join(args.pki, entry("server").cert_pem), "utf8") +
            fs.readFileSync(path.join(args.pki, entry("ca").cert_pem), "utf8"),
    );
    const users = new Map(args.users.map((u) => [u.split(":")[0], u.split(":").slice(1).join(":")]));
    const userManager = {
        isValidUser: (username, password) => (strict ? users.get(username) === password : true),
    };
    const server = new OPCUAServer({
        port: Number(args.port),
        host: "127.0.0.1",
        hostname: "127.0.0.1",
        resourcePath: "/kentei-corpus",
        serverCertificateManager: certificateManager,
        userCertificateManager: certificateManager,
        certificateFile: chain,
        privateKeyFile: path.join(args.pki, entry("server").key_pem),
        serverInfo: { applicationUri: index.server_application_uri, productUri: "kentei-corpus-node-opcua" },
        allowAnonymous: !strict,
        userManager,
        securityModes: strict
            ? [MessageSecurityMode.SignAndEncrypt]
            : [MessageSecurityMode.None, MessageSecurityMode.Sign, MessageSecurityMode.SignAndEncrypt],
        securityPolicies: strict
            ? [SecurityPolicy.Basic256Sha256, SecurityPolicy.Aes128_Sha256_RsaOaep, SecurityPolicy.Aes256_Sha256_RsaPss]
            : [SecurityPolicy.None, SecurityPolicy.Basic128Rsa15, SecurityPolicy.Basic256, SecurityPolicy.Basic256Sha256],
        registerServerMethod: 1, // HIDDEN: no discovery server on this machine
    });
    await server.start();
    const url = server.getEndpointUrl();
    process.stdout.write(`READY ${url}\n`);
    const stop = async () => {
        await server.shutdown(0);
        process.exit(0);
    };
    process.on("SIGTERM", stop);
    process.on("SIGINT", stop);
}

main().catch((err) => {
    process.stderr.write(`${err.stack || err}\n`);
    process.exit(1);
});
