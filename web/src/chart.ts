// A live line chart of prices, in SVG: redrawn as each tick arrives.
const WIDTH = 400;
const HEIGHT = 160;
const PAD = 24;
const SVG = "http://www.w3.org/2000/svg";

export class PriceChart {
  private prices: number[] = [];

  constructor(private readonly svg: SVGSVGElement, private readonly slots: number) {
    this.draw();
  }

  clear(): void {
    this.prices = [];
    this.draw();
  }

  add(price: number): void {
    this.prices.push(price);
    this.draw();
  }

  private draw(): void {
    this.svg.replaceChildren();
    const lo = 500;
    const hi = 600;
    const x = (i: number) => PAD + (i * (WIDTH - 2 * PAD)) / Math.max(1, this.slots - 1);
    const y = (p: number) => HEIGHT - PAD - ((p - lo) * (HEIGHT - 2 * PAD)) / (hi - lo);
    for (const p of [lo, 550, hi]) {
      const label = document.createElementNS(SVG, "text");
      label.setAttribute("x", "2");
      label.setAttribute("y", String(y(p) + 3));
      label.textContent = String(p);
      this.svg.append(label);
    }
    if (this.prices.length === 0) return;
    const line = document.createElementNS(SVG, "polyline");
    line.setAttribute("points", this.prices.map((p, i) => `${x(i)},${y(p)}`).join(" "));
    this.svg.append(line);
    this.prices.forEach((p, i) => {
      const dot = document.createElementNS(SVG, "circle");
      dot.setAttribute("cx", String(x(i)));
      dot.setAttribute("cy", String(y(p)));
      dot.setAttribute("r", "3");
      this.svg.append(dot);
    });
  }
}
