// The playground's end-to-end run in headless Chromium (playwright-core driving Debian's
// chromium): load the page, train the spirals on WebGPU, then on the CPU backend, train the
// digits and predict a drawn one, and open the page as a browser without WebGPU would. It
// writes what it saw into OUT (argument 1): the canvas's pixels (raw RGBA) and the network's
// weights at those pixels for each backend, screenshots, and result.json. It fails (exit 1)
// on anything a user would see go wrong; tests/it/playground.rs runs it and checks the
// pixels against the CPU backend's predictions for those weights.
//   node tests/web/playground.mjs OUT        (after `scripts/web.sh build`)
// CHROMIUM names the browser binary (default: Debian's /usr/lib/chromium/chromium).
import { chromium } from "playwright-core";
import { createServer } from "node:http";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { dirname, extname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
const site = join(root, "target/playground");
const out = resolve(process.argv[2] ?? join(root, "target/playground-e2e"));
const executablePath = process.env.CHROMIUM ?? "/usr/lib/chromium/chromium";
const fail = (message) => {
  console.error(`playground e2e: ${message}`);
  process.exit(1);
};
if (!existsSync(join(site, "pkg_bg.wasm"))) fail(`no page in ${site}: run scripts/web.sh build first`);
if (!existsSync(executablePath)) fail(`no browser at ${executablePath} (apt-get install chromium, or set CHROMIUM)`);
mkdirSync(out, { recursive: true });

// The page as scripts/web.sh serves it: static files on 127.0.0.1.
const types = { ".html": "text/html", ".js": "text/javascript", ".wasm": "application/wasm" };
const server = createServer((request, response) => {
  const path = join(site, decodeURIComponent(new URL(request.url, "http://x").pathname).replace(/\/$/, "/index.html"));
  if (!path.startsWith(site) || !existsSync(path)) return response.writeHead(404).end();
  response.writeHead(200, { "content-type": types[extname(path)] ?? "application/octet-stream" });
  response.end(readFileSync(path));
});
await new Promise((r) => server.listen(0, "127.0.0.1", r));
const url = `http://127.0.0.1:${server.address().port}/`;

const browser = await chromium.launch({
  executablePath,
  args: ["--no-sandbox", "--enable-unsafe-webgpu", "--disable-dev-shm-usage", "--disable-background-networking",
         "--disable-component-update", "--no-first-run"],
});
const result = {};
const seconds = (s) => new Promise((r) => setTimeout(r, s * 1000));

async function open(page, query = "") {
  const errors = [];
  page.on("pageerror", (e) => errors.push(e.message));
  page.on("console", (m) => m.type() === "error" && errors.push(m.text()));
  await page.goto(url + query);
  await page.waitForFunction(() => window.page?.ready || window.page?.error, null, { timeout: 60_000 });
  return errors;
}

const state = (page) => page.evaluate(() => ({ ...window.page }));

// Plays until `steps` more steps are done; returns the steps per second over the last part.
async function train(page, steps) {
  const start = (await state(page)).steps;
  await page.click("#play");
  await page.waitForFunction((n) => window.page.steps >= n || window.page.error, start + steps / 2, { timeout: 120_000 });
  const [t0, s0] = [Date.now(), (await state(page)).steps];
  await page.waitForFunction((n) => window.page.steps >= n || window.page.error, start + steps, { timeout: 120_000 });
  const [t1, s1] = [Date.now(), (await state(page)).steps];
  await page.click("#play"); // pause
  const s = await state(page);
  if (s.error) fail(`training stopped: ${s.error}`);
  return ((s1 - s0) * 1000) / (t1 - t0);
}

// The canvas's pixels once the picture shows the paused network: raw RGBA, with its size.
async function picture(page, name) {
  const s = await state(page);
  let rgba;
  if (s.show === "copy") {
    await page.waitForFunction((n) => window.page.frames >= n + 3, s.frames ?? 0, { timeout: 30_000 });
    rgba = await page.evaluate(() =>
      Array.from(document.getElementById("view2d").getContext("2d").getImageData(0, 0, 760, 420).data));
    await page.locator("#view2d").screenshot({ path: join(out, `${name}.png`) });
  } else {
    fail(`the page draws with "${s.show}"; this run reads pixels of copied frames (headless Chromium)`);
  }
  writeFileSync(join(out, `${name}.rgba`), Buffer.from(rgba));
  const weights = await page.evaluate(async () => Array.from(await window.playground.weights()));
  writeFileSync(join(out, `${name}.safetensors`), Buffer.from(weights));
}

try {
  const page = await browser.newPage();
  const errors = await open(page);
  let s = await state(page);
  if (!s.webgpu) fail(`no WebGPU in the page: ${await page.textContent("#message")}`);
  result.adapter = await page.textContent("#adapter");
  writeFileSync(join(out, "points.json"), JSON.stringify(Array.from(await page.evaluate(() => window.playground.points()))));
  result.show = s.show;

  // WebGPU: the loss falls as it trains.
  result.webgpu_steps_per_second = await train(page, 1500);
  s = await state(page);
  const losses = s.losses.map(([, train]) => train);
  if (losses.length < 5) fail(`only ${losses.length} loss readings in ${s.steps} steps`);
  result.webgpu_loss = [losses[0], losses.at(-1)];
  if (!(losses.at(-1) < losses[0] / 2)) fail(`the training loss did not fall: ${losses[0]} -> ${losses.at(-1)}`);
  await picture(page, "webgpu");
  // The rate with more steps a frame (the default 5 a frame is bound by the frame rate).
  await page.fill("#per_frame", "50");
  result.webgpu_steps_per_second_50_a_frame = await train(page, 3000);
  await page.fill("#per_frame", "5");

  // Every data set and the other settings build and train (on WebGPU): a dropout layer, ReLU,
  // SGD with momentum, three hidden layers, none.
  const variants = [
    { dataset: "circles", activation: "relu", dropout: "0.1", hidden: "6,6,4" },
    { dataset: "xor", activation: "sigmoid", optimizer: "momentum", lr: "0.1" },
    { dataset: "gaussian", hidden: "", optimizer: "sgd", lr: "0.1" },
  ];
  result.variants = [];
  for (const variant of variants) {
    for (const [id, value] of Object.entries(variant)) {
      if (id === "dataset" || id === "activation" || id === "optimizer") await page.selectOption(`#${id}`, value);
      else await page.fill(`#${id}`, value);
    }
    await page.click("#reset");
    await train(page, 300);
    const v = await state(page);
    if (v.error) fail(`${JSON.stringify(variant)}: ${v.error}`);
    result.variants.push({ ...variant, steps: v.steps, loss: v.losses.at(-1)?.[1] });
  }
  // Back to the spirals' network whose pictures were checked, for the switch below.
  for (const [id, value] of Object.entries({ dataset: "spirals", activation: "tanh", optimizer: "adam" })) {
    await page.selectOption(`#${id}`, value);
  }
  for (const [id, value] of Object.entries({ dropout: "0", hidden: "8,8", lr: "0.03" })) await page.fill(`#${id}`, value);
  await page.click("#reset");
  await train(page, 1500);
  await picture(page, "webgpu");

  // The same network on the CPU backend trains on.
  await page.selectOption("#backend", "cpu");
  await page.waitForFunction(() => window.page.backend === "cpu", null, { timeout: 30_000 });
  const before = (await state(page)).losses.length;
  result.cpu_steps_per_second = await train(page, 600);
  s = await state(page);
  const after = s.losses.slice(before).map(([, train]) => train);
  if (after.length < 2 || !after.every(Number.isFinite)) fail(`CPU backend losses: ${after}`);
  result.cpu_loss = after.at(-1);
  if (!(after.at(-1) < losses[0] / 2)) fail(`the CPU backend lost the training: ${after}`);
  await picture(page, "cpu");
  await page.fill("#per_frame", "50");
  result.cpu_steps_per_second_50_a_frame = await train(page, 3000);
  await page.fill("#per_frame", "5");
  await page.screenshot({ path: join(out, "page.png"), fullPage: true });

  // The digits: train, then draw a "1" (a vertical stroke) and ask.
  await page.click("#digits_train");
  await page.waitForFunction(() => window.page.digitAccuracy !== undefined, null, { timeout: 180_000 });
  result.digit_accuracy = (await state(page)).digitAccuracy;
  if (!(result.digit_accuracy > 0.8)) fail(`digits test accuracy ${result.digit_accuracy}`);
  const pad = await page.locator("#pad").boundingBox();
  await page.mouse.move(pad.x + 80, pad.y + 25);
  await page.mouse.down();
  for (let y = 25; y <= 135; y += 10) await page.mouse.move(pad.x + 80, pad.y + y);
  await page.mouse.up();
  await page.click("#predict");
  await page.waitForFunction(() => window.page.digit, null, { timeout: 30_000 });
  result.digit = (await state(page)).digit;
  const sum = result.digit.probs.reduce((a, b) => a + b, 0);
  if (Math.abs(sum - 1) > 1e-3 || !(result.digit.guess >= 0 && result.digit.guess <= 9)) {
    fail(`the drawn digit's prediction: ${JSON.stringify(result.digit)}`);
  }
  await page.screenshot({ path: join(out, "digits.png"), fullPage: true });
  if (errors.length) fail(`errors in the page: ${errors.join("; ")}`);

  // A browser without WebGPU: the page says so and trains on the CPU backend, drawn by its
  // script (the canvas is not blank).
  const plain = await browser.newPage();
  await open(plain, "?show=none");
  const message = await plain.textContent("#message");
  if (!message.includes("no WebGPU")) fail(`without WebGPU the page says: ${message}`);
  await train(plain, 200);
  const colours = await plain.evaluate(() => {
    const data = document.getElementById("view2d").getContext("2d").getImageData(0, 0, 760, 420).data;
    const seen = new Set();
    for (let i = 0; i < data.length; i += 4 * 97) seen.add(`${data[i]},${data[i + 1]},${data[i + 2]}`);
    return seen.size;
  });
  if (colours < 10) fail(`without WebGPU the canvas shows ${colours} colours`);
  result.no_webgpu_colours = colours;
  await plain.screenshot({ path: join(out, "no-webgpu.png"), fullPage: true });

  writeFileSync(join(out, "result.json"), JSON.stringify(result, null, 2));
  console.log(`playground e2e: passed; screenshots and result.json in ${out}`);
  console.log(JSON.stringify(result));
} finally {
  await browser.close();
  server.close();
}
