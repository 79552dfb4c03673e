// Example videos the server offers (`--examples`): one click fetches one and recognizes it.
import { bytes, humanize, make } from "./common.js";
import { el, showBusy, showError } from "./page.js";
import { choose } from "./upload.js";

export async function loadExamples() {
  let examples = [];
  try {
    const response = await fetch("v1/examples", { headers: { Accept: "application/json" } });
    if (response.ok) examples = await response.json();
  } catch (err) {
    return;  // no examples: the page works without them
  }
  el.exampleList.replaceChildren(...examples.map((example) => {
    const item = make("li");
    const button = make("button", "", humanize(example.label));
    button.type = "button";
    button.dataset.name = example.name;
    button.title = `${example.name} · ${bytes(example.size_bytes)}`;
    button.addEventListener("click", () => tryExample(example));
    item.append(button);
    return item;
  }));
  el.examples.hidden = examples.length === 0;
}

async function tryExample(example) {
  showBusy("Fetching the example…", 0);
  try {
    const response = await fetch(example.url);
    if (!response.ok) throw new Error("the example was not served");
    const blob = await response.blob();
    choose(new File([blob], example.name, { type: "video/mp4" }));
  } catch (err) {
    showError("The example could not be fetched", "Try another, or choose a video of your own.");
  }
}
