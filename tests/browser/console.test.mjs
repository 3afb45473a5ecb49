// The operator console (/console) in a real browser: Debian's Chromium,
// headless, driven by playwright-core, against a real `alknet serve` over TLS
// with its self-signed certificate. The page talks to the node only through
// the WebSocket session at /alknet/call (docs/protocol.md §12).
//
// Run by tests/run with ALKNET_BIN (the binary) and CARGO_TARGET_DIR (where
// the screenshot goes) set.

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtempSync, mkdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { chromium } from "playwright-core";

const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";
const artifacts = join(process.env.CARGO_TARGET_DIR || "target", "artifacts");

let node;
let browser;

/** Starts `alknet serve` and waits for its banner. */
function startNode() {
  const bin = process.env.ALKNET_BIN;
  assert.ok(bin, "ALKNET_BIN must point at the alknet binary (tests/run sets it)");
  const dataDir = mkdtempSync(join(tmpdir(), "alknet-console-"));
  writeFileSync(join(dataDir, "alknet.toml"), "[diagnostics]\ncall_ops = true\n");
  const child = spawn(bin, ["serve", "--listen", "127.0.0.1:0", "--data-dir", dataDir], {
    stdio: ["ignore", "pipe", "pipe"],
  });
  const stderr = [];
  child.stderr.on("data", (chunk) => stderr.push(chunk.toString()));
  return new Promise((resolve, reject) => {
    const started = { child, dataDir, port: null, adminToken: null };
    const timer = setTimeout(() => reject(new Error("alknet serve did not start: " + stderr.join(""))), 30_000);
    child.on("exit", (code) => reject(new Error(`alknet serve exited (${code}): ${stderr.join("")}`)));
    createInterface({ input: child.stdout }).on("line", (line) => {
      if (line.startsWith("listening on ")) started.port = Number(line.split(" ")[2].split(":").pop());
      if (line.startsWith("admin token: ")) started.adminToken = line.split(" ")[2];
      if (line.startsWith("serving:")) {
        clearTimeout(timer);
        resolve(started);
      }
    });
  });
}

before(async () => {
  node = await startNode();
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
           "--disable-component-update", "--disable-sync", "--no-first-run"],
  });
});

after(async () => {
  await browser?.close();
  if (node) {
    node.child.kill("SIGINT");
    rmSync(node.dataDir, { recursive: true, force: true });
  }
});

/** The tree as the page shows it, by actor name. */
async function treeNames(page) {
  return page.$$eval("#tree [data-name]", (nodes) => nodes.map((n) => n.dataset.name));
}

test("the console connects with the admin token, shows the tree, calls operations and is reachable by the node", async () => {
  const context = await browser.newContext({ ignoreHTTPSErrors: true, viewport: { width: 1280, height: 900 } });
  const page = await context.newPage();
  const failures = [];
  page.on("pageerror", (error) => failures.push(String(error)));
  page.on("requestfailed", (request) => failures.push("request failed: " + request.url()));
  const response = await page.goto(`https://127.0.0.1:${node.port}/console`);
  assert.equal(response.status(), 200);
  assert.match(response.headers()["content-type"], /^text\/html; charset=utf-8/);

  await page.fill("#token", node.adminToken);
  await page.click("#connect");
  await page.waitForSelector("#status.connected", { timeout: 10_000 });

  // The ops the token may call, from services/list.
  await page.waitForSelector('#ops li[data-name="services/list"]', { timeout: 10_000 });
  const ops = await page.$$eval("#ops li", (items) => items.map((i) => i.dataset.name));
  assert.ok(ops.includes("admin/tree") && ops.includes("diag/echo"), ops.join(", "));

  // The live tree: proto/http, and this page's own ws-session with its identity.
  await page.waitForSelector('#tree [data-name="ws-session"]', { timeout: 10_000 });
  const names = await treeNames(page);
  for (const name of ["node", "proto/http", "http-conn", "ws-session", "router"]) {
    assert.ok(names.includes(name), `${name} in ${names.join(", ")}`);
  }
  const session = await page.textContent('#tree [data-name="ws-session"]');
  assert.match(session, /identity admin/);
  assert.match(session, /\[session\]/);
  // The ws-session sits inside an http-conn inside proto/http.
  const nested = await page.$('#tree [data-name="proto/http"] [data-name="http-conn"] [data-name="ws-session"]');
  assert.ok(nested, "ws-session is nested under proto/http → http-conn");

  // Call services/list from the form and see the result.
  await page.click('#ops li[data-name="services/list"]');
  await page.fill("#op-input", "{}");
  await page.click("#call");
  await page.waitForFunction(() => document.querySelector("#result").textContent.includes('"operations"'));
  assert.equal(await page.getAttribute("#result", "class"), "");

  // An error shows as an error.
  await page.fill("#op-name", "nope/missing");
  await page.click("#call");
  await page.waitForFunction(() => document.querySelector("#result").textContent.includes("NOT_FOUND"));
  assert.equal(await page.getAttribute("#result", "class"), "error");

  // A page script registers ui/ping; a call the test makes through the hub
  // (diag/callback, which calls back the caller's own session) reaches it.
  await page.evaluate(() => window.alknetConsole.registerOperation(
    { name: "ui/echo", op_type: "query" }, (input) => ({ echoed: input })));
  const pinged = await page.evaluate(() =>
    window.alknetConsole.call("diag/callback", { operation: "ui/ping", input: { from: "test" } }));
  assert.equal(pinged.pong, true);
  assert.deepEqual(pinged.input, { from: "test" });
  const echoed = await page.evaluate(() =>
    window.alknetConsole.call("diag/callback", { operation: "ui/echo", input: { n: 1 } }));
  assert.deepEqual(echoed, { echoed: { n: 1 } });
  await page.waitForFunction(() => document.querySelector("#log").textContent.includes("ui/ping called by the node"));

  // The tree refreshes by itself: the request counter of our session grows.
  const before = await page.textContent('#tree [data-name="ws-session"]');
  await page.waitForFunction(
    (text) => document.querySelector('#tree [data-name="ws-session"]')?.textContent !== text,
    before, { timeout: 5_000 });

  mkdirSync(artifacts, { recursive: true });
  await page.screenshot({ path: join(artifacts, "console.png"), fullPage: true });

  // The kill button on our own session: the node closes it with 1008.
  await page.click('#tree [data-name="ws-session"] button.kill');
  await page.waitForSelector("#status.closed", { timeout: 10_000 });
  assert.match(await page.textContent("#status"), /1008 killed by operator/);

  assert.deepEqual(failures, []);
  await context.close();
});

test("a wrong token is refused and the page says so", async () => {
  const context = await browser.newContext({ ignoreHTTPSErrors: true });
  const page = await context.newPage();
  await page.goto(`https://127.0.0.1:${node.port}/console`);
  await page.fill("#token", "alk_not_a_token");
  await page.click("#connect");
  await page.waitForSelector("#status.closed", { timeout: 10_000 });
  assert.match(await page.textContent("#status"), /refused/);
  await context.close();
});
