// The page's script: the controls, the frame loop, the loss curves and the digit pad. The
// networks and the picture are the wasm module's (page.rs); `window.page` exposes the state
// that the end-to-end test (tests/web/playground.mjs) reads.
import init, { Playground } from "./pkg.js";

const $ = (id) => document.getElementById(id);
const page = (window.page = { ready: false, error: null, steps: 0, sps: 0, backend: null, losses: [], webgpu: false });

function settings() {
  const number = (id) => Number($(id).value);
  return JSON.stringify({
    dataset: $("dataset").value,
    noise: number("noise"),
    test_share: number("test_share"),
    hidden: $("hidden").value.split(",").map((w) => parseInt(w, 10)).filter((w) => w > 0),
    activation: $("activation").value,
    lr: number("lr"),
    optimizer: $("optimizer").value,
    batch: number("batch"),
    dropout: number("dropout"),
    seed: 1,
  });
}

function show(message) {
  $("message").textContent = message;
}

// Whether this browser shows a WebGPU canvas: headless Chromium on SwiftShader destroys the
// device at a canvas's first frame, so a throwaway device tries one first.
async function canvasShows() {
  try {
    const device = await (await navigator.gpu.requestAdapter()).requestDevice();
    let lost = false;
    device.lost.then(() => (lost = true));
    const canvas = document.createElement("canvas");
    canvas.width = canvas.height = 4;
    const context = canvas.getContext("webgpu");
    context.configure({ device, format: navigator.gpu.getPreferredCanvasFormat() });
    const encoder = device.createCommandEncoder();
    const view = context.getCurrentTexture().createView();
    encoder.beginRenderPass({ colorAttachments: [{ view, loadOp: "clear", storeOp: "store" }] }).end();
    device.queue.submit([encoder.finish()]);
    await device.queue.onSubmittedWorkDone();
    await new Promise((r) => setTimeout(r, 200));
    const shows = !lost;
    device.destroy();
    return shows;
  } catch {
    return false;
  }
}

// How the page draws: "canvas" (WebGPU straight to the canvas), "copy" (WebGPU frames copied
// to a 2D canvas) or "none" (no WebGPU: the CPU backend, drawn by this script). `?show=` picks
// one, for trying the others.
async function showing() {
  const asked = new URLSearchParams(location.search).get("show");
  if (asked) return asked;
  const adapter = navigator.gpu && (await navigator.gpu.requestAdapter().catch(() => null));
  if (!adapter) return "none";
  return (await canvasShows()) ? "canvas" : "copy";
}

async function start() {
  await init();
  let playground;
  page.show = await showing();
  if (page.show !== "none") {
    try {
      playground = await Playground.create($("view"), settings(), page.show);
    } catch (e) {
      show(`WebGPU failed (${e}); training on the CPU backend in wasm instead.`);
      page.show = "none";
    }
  } else {
    show("This browser has no WebGPU (or it is off): training on the CPU backend in wasm instead.");
  }
  if (!playground) playground = await Playground.create($("view2d"), settings(), "none");
  if (page.show !== "canvas") {
    $("view").style.display = "none";
    $("view2d").style.display = "block";
  }
  if (page.show === "none") {
    $("backend").value = "cpu";
    $("backend").querySelector("option[value=gpu]").disabled = true;
  }
  page.webgpu = page.show !== "none";
  window.playground = playground;
  $("adapter").textContent = `adapter: ${playground.adapter()}; drawn ${page.show === "canvas" ? "on the WebGPU canvas" : page.show === "copy" ? "by WebGPU, copied to the page (this browser does not show WebGPU canvases)" : "by the page's script"}`;
  return playground;
}

// Draws the picture on the 2D canvas (the CPU backend without WebGPU), as view.wgsl does.
function draw2d(playground) {
  const layout = JSON.parse(playground.layout());
  const values = playground.picture();
  const ctx = $("view2d").getContext("2d");
  ctx.fillStyle = "#f7f7f7";
  ctx.fillRect(0, 0, 760, 420);
  const grid = layout.grid;
  const orange = [245, 140, 51], blue = [51, 115, 230];
  const mix = (c, t) => c.map((v) => Math.round(255 + (v - 255) * t));
  const image = (color) => {
    const data = ctx.createImageData(grid, grid);
    for (let i = 0; i < grid * grid; i++) data.data.set([...color(i), 255], i * 4);
    return data;
  };
  const put = (data, x, y, side) => {
    const tmp = document.createElement("canvas");
    tmp.width = tmp.height = grid;
    tmp.getContext("2d").putImageData(data, 0, 0);
    ctx.imageSmoothingEnabled = false;
    ctx.drawImage(tmp, x, y, side, side);
  };
  const [mx, my, side] = layout.main;
  put(image((i) => {
    const [p0, p1] = [values[i * 2], values[i * 2 + 1]];
    return mix(p1 > p0 ? blue : orange, 0.3 + 0.5 * Math.max(p0, p1));
  }), mx, my, side);
  let offset = grid * grid * 2;
  const starts = layout.widths.map((w) => { const s = offset; offset += grid * grid * w; return s; });
  for (const [l, j, x, y, s] of layout.neurons) {
    const w = layout.widths[l];
    put(image((i) => {
      const v = values[starts[l] + i * w + j];
      return mix(v > 0 ? blue : orange, Math.min(Math.abs(v), 1));
    }), x, y, s);
  }
  const points = playground.points();
  for (let i = 0; i < points.length; i += 4) {
    const [x, y, c, test] = points.slice(i, i + 4);
    ctx.beginPath();
    ctx.arc(mx + (x + 1) / 2 * side, my + (1 - y) / 2 * side, 4, 0, 2 * Math.PI);
    ctx.strokeStyle = "#333";
    ctx.fillStyle = `rgb(${(c ? blue : orange).join(",")})`;
    if (!test) ctx.fill();
    ctx.stroke();
  }
}

function chart() {
  const ctx = $("losses").getContext("2d");
  ctx.fillStyle = "#fff";
  ctx.fillRect(0, 0, 320, 200);
  const losses = page.losses;
  if (losses.length < 2) return;
  const top = Math.max(...losses.flatMap(([, a, b]) => [a, isFinite(b) ? b : 0]), 1e-6);
  const last = losses[losses.length - 1][0];
  const line = (index, color) => {
    ctx.beginPath();
    ctx.strokeStyle = color;
    losses.forEach((row, i) => {
      if (!isFinite(row[index])) return;
      const x = (row[0] / last) * 310 + 5, y = 195 - (row[index] / top) * 185;
      i ? ctx.lineTo(x, y) : ctx.moveTo(x, y);
    });
    ctx.stroke();
  };
  line(1, "#222");
  line(2, "#e8862a");
}

function pad() {
  const canvas = $("pad"), ctx = canvas.getContext("2d");
  const clear = () => { ctx.fillStyle = "#fff"; ctx.fillRect(0, 0, 160, 160); };
  clear();
  let down = false;
  const at = (e) => { const r = canvas.getBoundingClientRect(); return [e.clientX - r.left, e.clientY - r.top]; };
  canvas.addEventListener("pointerdown", (e) => { down = true; ctx.beginPath(); ctx.moveTo(...at(e)); });
  canvas.addEventListener("pointermove", (e) => {
    if (!down) return;
    ctx.lineTo(...at(e));
    ctx.lineWidth = 16; ctx.lineCap = "round"; ctx.strokeStyle = "#000";
    ctx.stroke();
  });
  window.addEventListener("pointerup", () => (down = false));
  $("clear").onclick = clear;
  // The 8×8 digits are dark strokes on light paper, scaled to [0, 1]: each cell's darkness.
  return () => {
    const data = ctx.getImageData(0, 0, 160, 160).data;
    const cells = new Float32Array(64);
    for (let y = 0; y < 160; y++)
      for (let x = 0; x < 160; x++)
        cells[Math.floor(y / 20) * 8 + Math.floor(x / 20)] += (255 - data[(y * 160 + x) * 4]) / 255 / 400;
    return cells;
  };
}

async function main() {
  const playground = await start();
  let running = false, single = 0, digitSteps = 0, switching = false;
  const history = [];
  const rebuild = () => {
    try {
      playground.configure(settings());
      page.losses = [];
      page.error = null;
    } catch (e) {
      show(`${e}`);
      page.error = `${e}`;
    }
  };
  for (const id of ["dataset", "noise", "test_share", "hidden", "activation", "lr", "optimizer", "batch", "dropout"])
    $(id).addEventListener("change", rebuild);
  $("reset").onclick = rebuild;
  $("play").onclick = () => { running = !running; $("play").textContent = running ? "pause" : "play"; };
  $("step").onclick = () => (single += 1);
  $("backend").onchange = async () => {
    switching = true;
    try {
      await playground.switch_backend($("backend").value);
    } catch (e) {
      show(`${e}`);
    }
    switching = false;
  };
  $("digits_train").onclick = () => (digitSteps += 400);
  const drawing = pad();
  $("predict").onclick = async () => {
    try {
      const probs = await playground.digits_predict(drawing());
      const best = probs.indexOf(Math.max(...probs));
      $("guess").textContent = `${best}`;
      $("probs").innerHTML = [...probs].map((p, d) => `<span>${d}</span><div style="width:${Math.round(p * 200)}px; display:inline-block"></div><br>`).join("");
      page.digit = { guess: best, probs: [...probs] };
    } catch (e) {
      show(`${e}`);
    }
  };

  page.ready = true;
  const loop = () => {
    if (!switching) {
      try {
        const steps = running ? Number($("per_frame").value) : single;
        if (playground.frame(steps)) single = 0;
        if (page.show === "none") draw2d(playground);
        if (page.show === "copy") {
          const pixels = playground.take_frame();
          if (pixels) {
            const image = new ImageData(new Uint8ClampedArray(pixels.buffer, pixels.byteOffset, pixels.length), 760, 420);
            $("view2d").getContext("2d").putImageData(image, 0, 0);
            page.frames = (page.frames || 0) + 1;
          }
        }
        if (digitSteps > 0 && playground.digits_frame(Math.min(digitSteps, 20))) digitSteps -= Math.min(digitSteps, 20);
        const status = JSON.parse(playground.status());
        if (status) {
          page.steps = status.steps;
          page.backend = status.backend;
          page.digitSteps = status.digitSteps;
          page.losses.push(...status.losses);
          history.push([performance.now(), status.steps]);
          while (history.length > 1 && history[0][0] < performance.now() - 1000) history.shift();
          const [t0, s0] = history[0], [t1, s1] = history[history.length - 1];
          page.sps = t1 > t0 ? ((s1 - s0) * 1000) / (t1 - t0) : 0;
        }
      } catch (e) {
        page.error = `${e}`;
        show(`${e}`);
        running = false;
      }
    }
    $("steps").textContent = page.steps;
    $("sps").textContent = page.sps.toFixed(0);
    const last = page.losses[page.losses.length - 1];
    if (last) {
      $("train_loss").textContent = last[1].toFixed(4);
      $("test_loss").textContent = isFinite(last[2]) ? last[2].toFixed(4) : "–";
    }
    $("digit_steps").textContent = page.digitSteps ?? 0;
    chart();
    requestAnimationFrame(loop);
  };
  requestAnimationFrame(loop);
  $("digits_train").addEventListener("click", () => {
    setTimeout(async () => {
      while (digitSteps > 0) await new Promise((r) => setTimeout(r, 100));
      try {
        const accuracy = await playground.digits_accuracy();
        $("digit_accuracy").textContent = `${(accuracy * 100).toFixed(1)}%`;
        page.digitAccuracy = accuracy;
      } catch (e) {
        show(`${e}`);
      }
    }, 0);
  });
}

main().catch((e) => {
  page.error = `${e}`;
  show(`The playground could not start: ${e}`);
});
