// Run in a rendered book page: returns {findings: [...], animations: [...], ...}.
// Each finding is {kind, where, detail}: kind groups findings of one sort,
// where locates the element (its section heading), detail quotes it.
(opts) => {
  const findings = [];
  const add = (kind, el, detail) => findings.push({kind, where: el ? locate(el) : "", detail});
  const clip = (s, n = 90) => {
    s = String(s || "").replace(/\s+/g, " ").trim();
    return s.length > n ? s.slice(0, n - 3) + "..." : s;
  };
  function locate(el) {
    // the nearest section heading above the element, e.g. '§ 1.3 Reward'
    const section = el.closest("section");
    const h = section && section.querySelector("h1, h2, h3, h4");
    const top = Math.round(el.getBoundingClientRect().top + window.scrollY);
    return (h ? "§ " + clip(h.textContent.replace(/#$/, ""), 50) : "page") + ` (y=${top})`;
  }
  const column = document.querySelector("article.bd-article") || document.querySelector("main") || document.body;
  const colRect = column.getBoundingClientRect();
  const overflows = (el) => el.scrollWidth > el.clientWidth + 1;
  const outsideColumn = (el) => {
    const r = el.getBoundingClientRect();
    return r.width > 0 && (r.right > colRect.right + 1 || r.left < colRect.left - 1);
  };
  const reported = new Set();

  // -- formulas -------------------------------------------------------------
  const mjDoc = window.MathJax && MathJax.startup && MathJax.startup.document;
  const texOf = (el) => {
    try {
      const items = mjDoc ? mjDoc.getMathItemsWithin(el) : [];
      if (items.length) return items[0].math;
    } catch (e) {}
    return el.textContent;
  };
  for (const err of document.querySelectorAll("mjx-merror")) {
    const box = err.closest("mjx-container") || err;
    add("MathJax error", box, `${clip(err.getAttribute("data-mjx-error") || err.textContent, 60)} in ${clip(texOf(box), 80)}`);
  }
  for (const el of document.querySelectorAll(".math")) {
    if (!el.querySelector("mjx-container") && !el.closest("pre, code")) add("formula not typeset", el, clip(el.textContent));
  }
  // raw TeX: a dollar sign (the book quotes no prices) or a TeX command that
  // MathJax did not typeset, e.g. a maths span that Markdown broke in two
  const raw = /\$|\\begin\{|\\\[|\\\(|\\[a-zA-Z]{2,}\b/;
  const walker = document.createTreeWalker(column, NodeFilter.SHOW_TEXT, {
    acceptNode: (n) =>
      n.parentElement.closest("pre, code, script, style, textarea, mjx-container, .MathJax, .highlight, .cell_input")
        ? NodeFilter.FILTER_REJECT : NodeFilter.FILTER_ACCEPT,
  });
  while (walker.nextNode()) {
    const t = walker.currentNode.textContent;
    if (raw.test(t)) add("raw TeX left in the text", walker.currentNode.parentElement, clip(t.slice(Math.max(0, t.search(raw) - 30))));
  }

  // a list item that starts inside a formula: Markdown read a line of maths that
  // begins with "- " as a new item
  for (const li of column.querySelectorAll("li")) {
    const first = (li.textContent || "").trim();
    if (/^\\[a-zA-Z]/.test(first))
      add("list item inside a formula", li, clip(first, 80));
  }

  // -- exercises: no answer visible before it is asked for --------------------
  // (inside a closed <details>, as hide-cell and the togglebutton dropdowns are,
  // an element keeps a layout box when asked, but is not drawn and has no innerText)
  const shown = (el) => {
    const r = el.getBoundingClientRect();
    if (r.width === 0 || r.height === 0 || el.closest("details:not([open])")) return false;
    if (el.checkVisibility && !el.checkVisibility({visibilityProperty: true})) return false;
    return (el.innerText || "").trim() !== "";
  };
  for (const section of column.querySelectorAll("section")) {
    const heading = section.querySelector(":scope > h1, :scope > h2, :scope > h3");
    if (!heading || !/^Exercises/.test(heading.textContent.trim())) continue;
    for (const cell of section.querySelectorAll("div.cell")) {
      if (cell.classList.contains("tag_exercise-start")) continue;  // the reader's own cell
      for (const part of cell.querySelectorAll(".cell_output, .cell_input")) {
        if (shown(part)) add("exercise answer visible before it is opened", part, clip(part.innerText, 80));
      }
    }
    for (const box of section.querySelectorAll("div.admonition")) {
      const title = box.querySelector(".admonition-title");
      if (!title || !/^Solution/.test(title.textContent.trim())) continue;
      for (const child of box.children) {
        if (child !== title && !child.classList.contains("toggle-button") && shown(child))
          add("exercise answer visible before it is opened", box, clip(child.innerText, 80));
      }
    }
  }

  // -- widths ---------------------------------------------------------------
  // the characters that fit one line of a pre, in its own font
  const columnsThatFit = (pre) => {
    const probe = document.createElement("span");
    probe.textContent = "0".repeat(100);
    pre.appendChild(probe);
    const cw = probe.getBoundingClientRect().width / 100;
    probe.remove();
    const cs = getComputedStyle(pre);
    return Math.floor((pre.clientWidth - parseFloat(cs.paddingLeft) - parseFloat(cs.paddingRight)) / cw);
  };
  if (opts.codeColumns) {
    // at desktop widths, a line of the longest allowed length must fit unwrapped
    for (const pre of document.querySelectorAll("div.highlight pre")) {
      if (pre.clientWidth === 0) continue;  // inside a closed dropdown
      const fit = columnsThatFit(pre);
      if (fit < opts.codeColumns) {
        add("code column narrower than " + opts.codeColumns + " characters", pre, `${fit} fit: ${clip(pre.textContent, 60)}`);
        break;  // one is enough: the style is the same for all
      }
    }
  }
  for (const pre of document.querySelectorAll("div.highlight pre")) {
    if (!overflows(pre) && !outsideColumn(pre)) continue;
    reported.add(pre);
    const kind = pre.closest(".cell_output") ? "output wider than the column"
      : pre.closest(".cell_input") ? "code cell wider than the column" : "code block wider than the column";
    const fit = columnsThatFit(pre);
    const lines = pre.textContent.replace(/\n$/, "").split("\n");
    const long = lines.filter((l) => l.length > fit);
    const worst = lines.reduce((a, b) => (b.length > a.length ? b : a), "");
    add(kind, pre, `${long.length} line(s) over the ${fit} columns that fit ` +
      `(${pre.scrollWidth - pre.clientWidth} px cut); longest ${worst.length} cols: ${clip(worst, 100)}`);
  }
  for (const el of document.querySelectorAll("mjx-container[display='true'], mjx-container[display]")) {
    const holder = el.closest("div.math") || el;
    if (reported.has(holder)) continue;
    if (overflows(el) || overflows(holder) || outsideColumn(el)) {
      reported.add(holder);
      reported.add(el);
      const w = Math.max(el.scrollWidth, holder.scrollWidth), c = Math.min(el.clientWidth, holder.clientWidth);
      add("equation wider than the column", el, `${w} px in ${c} px (style overflow: ${getComputedStyle(holder).overflowX}): ${clip(texOf(el), 110)}`);
    }
  }
  // inline formulas too long for the line: they cannot wrap, so they stick out
  for (const el of column.querySelectorAll("mjx-container:not([display='true'])")) {
    if (el.closest("table, .highlight, div.math")) continue;
    if (outsideColumn(el)) add("formula wider than the column", el, clip(texOf(el), 110));
  }
  for (const el of document.querySelectorAll(".cell_output > *, .output_area, .cell_output .output")) {
    if (reported.has(el) || [...reported].some((r) => el.contains(r))) continue;
    if (overflows(el) || outsideColumn(el)) {
      reported.add(el);
      // name the widest thing inside, the usual culprit
      let widest = null, widestWidth = 0;
      for (const d of el.querySelectorAll("*")) {
        const w = d.getBoundingClientRect().width;
        if (w > widestWidth) { widest = d; widestWidth = w; }
      }
      const culprit = widest ? `; widest inside: <${widest.tagName.toLowerCase()} class="${clip(widest.className, 40)}"> ${Math.round(widestWidth)} px` : "";
      add("output wider than the column", el, `${el.scrollWidth} px in ${el.clientWidth} px, <${el.tagName.toLowerCase()} class="${clip(el.className, 50)}">${culprit}: ${clip(el.innerText || el.textContent, 70)}`);
    }
  }
  for (const el of column.querySelectorAll("table")) {
    const box = el.closest(".pst-scrollable-table-container, .table-wrapper") || el;
    if (reported.has(box) || [...reported].some((r) => r.contains(box))) continue;
    if (overflows(box) || outsideColumn(el)) {
      reported.add(box);
      // the cell whose content is widest for its column
      let worst = null, worstOver = -Infinity;
      for (const cell of el.querySelectorAll("td, th")) {
        const over = cell.scrollWidth - cell.clientWidth;
        if (over > worstOver) { worst = cell; worstOver = over; }
      }
      const cell = worst ? `; widest cell: ${clip(worst.innerText, 40)}` : "";
      add("table wider than the column", el, `${Math.max(box.scrollWidth, el.scrollWidth)} px in ${box.clientWidth} px${cell}: ${clip(el.innerText, 70)}`);
    }
  }
  const doc = document.documentElement;
  if (doc.scrollWidth > doc.clientWidth + 1) {
    // the outermost elements that stick out on the right
    // (not looking inside containers that fit and clip what overflows them)
    const culprits = [];
    const visit = (el) => {
      for (const child of el.children) {
        if (culprits.length >= 3) return;
        if (getComputedStyle(child).position === "fixed") continue;  // never scrolls the page
        const r = child.getBoundingClientRect();
        const cls = child.className && child.className.baseVal !== undefined ? child.className.baseVal : child.className;
        if (r.width > 0 && r.right > doc.clientWidth + 1) {
          culprits.push(`<${child.tagName.toLowerCase()} class="${clip(cls, 40)}"> right=${Math.round(r.right)}: ${clip(child.innerText || child.textContent, 50)}`);
        } else if (getComputedStyle(child).overflowX === "visible") {
          visit(child);
        }
      }
    };
    visit(document.body);
    add("page scrolls horizontally", null, `document ${doc.scrollWidth} px wide in a ${doc.clientWidth} px window; sticking out: ${culprits.join(" | ") || "?"}`);
  }

  // -- images ---------------------------------------------------------------
  for (const img of document.querySelectorAll("img")) {
    const name = clip(img.getAttribute("src") && img.getAttribute("src").startsWith("data:")
      ? (img.id || img.alt || "data: image") : img.getAttribute("src"), 80);
    if (!img.complete || img.naturalWidth === 0) add("image not loaded", img, `${name} (alt: ${clip(img.alt, 40)})`);
    const alt = (img.getAttribute("alt") || "").trim();
    const src = img.getAttribute("src") || "";
    // (not the theme's logo, an animation's frames or a widget's image: ipywidgets' Image has no alt)
    if (opts.checkAlt && !img.closest(".navbar-brand, .logo, .animation, .jupyter-widgets") &&
        (!alt || src.endsWith(alt) || /\.(png|jpe?g|gif|svg)$/i.test(alt)))
      add("image without alt text", img, `${name}${alt ? ` (alt is its file name: ${clip(alt, 50)})` : ""}`);
  }

  // -- widgets --------------------------------------------------------------
  const state = document.querySelector('script[type="application/vnd.jupyter.widget-state+json"]');
  const views = [...document.querySelectorAll('script[type="application/vnd.jupyter.widget-view+json"]')];
  const widgetViews = views.map((s) => {
    let id = "?";
    try { id = JSON.parse(s.textContent).model_id; } catch (e) {}
    const area = s.parentElement;
    const rendered = !!area.querySelector(".jupyter-widgets, .widget-subarea > *, [class*='widget-'] > *");
    const box = area.querySelector(".widget-subarea") || area;
    const r = box.getBoundingClientRect();
    return {id, rendered, height: Math.round(r.height), el: s};
  });
  if (state) {
    for (const v of widgetViews) {
      if (!v.rendered) add("widget not rendered", v.el, `view of model ${v.id}`);
      else if (v.height < 5) add("widget not rendered", v.el, `view of model ${v.id} has no height`);
    }
  } else if (views.length) {
    add("widget not rendered", views[0], `${views.length} widget view(s) but no widget state on the page`);
  }

  // -- launch buttons -------------------------------------------------------
  const colab = [...document.querySelectorAll('a[href*="colab.research.google.com"]')]
    .filter((a) => a.closest(".article-header-buttons, .header-article-items, .dropdown-launch-buttons, .bd-header-article") || /Colab/.test(a.title))
    .map((a) => a.getAttribute("href"));

  // -- animations -----------------------------------------------------------
  const animations = [...document.querySelectorAll("div.animation")].map((div, i) => {
    const img = div.querySelector("img");
    const slider = div.querySelector("input.anim-slider, input[type=range]");
    const play = div.querySelector('button[title="Play"]');
    const id = img && img.id ? img.id.replace(/^_anim_img/, "") : "";
    const r = div.getBoundingClientRect();
    return {
      index: i, id, where: locate(div),
      hasImg: !!img, hasSlider: !!slider, hasPlay: !!play,
      player: !!(id && window["anim" + id]),
      frames: slider ? parseInt(slider.max) + 1 : 0,
      frame: slider ? slider.value : null,
      src: img ? String(img.src).length + ":" + String(img.src).slice(-40) : null,
      width: Math.round(r.width), imgWidth: img ? Math.round(img.getBoundingClientRect().width) : 0,
    };
  });

  return {
    findings,
    colab,
    animations,
    widgetState: !!state,
    widgetViews: widgetViews.map(({id, rendered, height}) => ({id, rendered, height})),
    counts: {
      math: document.querySelectorAll("mjx-container").length,
      images: document.querySelectorAll("img").length,
      code: document.querySelectorAll(".cell_input div.highlight pre").length,
    },
  };
}
