// The audible alarm: while an alarm (priority 0) is new — nobody has acknowledged it — every
// logged-in page sounds a two-tone siren made with WebAudio (no sound file). The count comes
// with the page (body[data-alarms]) and then with each live notice (live.js).
//
// Browsers keep sound off until the person has used the page (autoplay policy). Then
// #sound[data-state] is "blocked" and the "turn on sound" button (#sound-enable) shows; a click
// on it, or any click or key on the page, lets the sound start. States: idle | sounding |
// blocked | unsupported.
"use strict";

(function () {
  const box = document.getElementById("sound");
  const button = document.getElementById("sound-enable");
  if (!box || !button) {
    return;
  }
  let audio = null;
  let oscillator = null;
  let ticker = null;

  function context() {
    if (!audio) {
      const Context = window.AudioContext || window.webkitAudioContext;
      if (!Context) {
        return null;
      }
      audio = new Context();
      audio.addEventListener("statechange", update);
    }
    return audio;
  }

  function show(state) {
    box.dataset.state = state;
    for (const el of box.querySelectorAll(".sound-text")) {
      el.hidden = el.dataset.for !== state;
    }
    button.hidden = state !== "blocked";
  }

  function start() {
    const ctx = context();
    if (!ctx) {
      show("unsupported");
      return;
    }
    if (ctx.state !== "running") {
      ctx.resume().catch(function () {});
      if (ctx.state !== "running") {
        show("blocked");
        return;
      }
    }
    if (!oscillator) {
      oscillator = ctx.createOscillator();
      const gain = ctx.createGain();
      oscillator.type = "square";
      gain.gain.value = 0.12;
      oscillator.connect(gain).connect(ctx.destination);
      oscillator.start();
      let high = false;
      ticker = setInterval(function () {
        high = !high;
        oscillator.frequency.setValueAtTime(high ? 960 : 720, ctx.currentTime);
      }, 450);
    }
    show("sounding");
  }

  function stop() {
    if (oscillator) {
      clearInterval(ticker);
      oscillator.stop();
      oscillator.disconnect();
      oscillator = null;
    }
    show("idle");
  }

  function alarms() {
    return Number(document.body.dataset.alarms || "0");
  }

  function update() {
    if (alarms() > 0) {
      start();
    } else {
      stop();
    }
  }

  function gesture() {
    if (alarms() > 0) {
      const ctx = context();
      if (ctx && ctx.state !== "running") {
        ctx.resume().then(update).catch(function () {});
      }
    }
  }

  button.addEventListener("click", gesture);
  document.addEventListener("pointerdown", gesture);
  document.addEventListener("keydown", gesture);
  document.addEventListener("tuquan:alarms", update);
  update();
})();
