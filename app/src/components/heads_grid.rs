//! The Transformer view: a layer x head grid of small heatmaps for one kind of attention
//! (cross, masked decoder self, encoder self), each head or averaged over heads or layers;
//! clicking a small map zooms it, with token labels, below the grid.

use leptos::prelude::*;

use crate::components::token::TokenText;
use crate::heads::{Heads, Kind};
use crate::view::ViewSettings;

/// How the grid aggregates heads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Aggregate {
    /// One map per layer and head.
    Each,
    /// One map per layer: the mean over its heads.
    MeanHeads,
    /// One map per head: the mean over the layers.
    MeanLayers,
}

impl Aggregate {
    fn parse(s: &str) -> Self {
        match s {
            "mean-heads" => Self::MeanHeads,
            "mean-layers" => Self::MeanLayers,
            _ => Self::Each,
        }
    }
}

/// One map of the grid: which layer and head it shows (`None`: averaged over that axis).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Pick {
    layer: Option<usize>,
    head: Option<usize>,
}

impl Pick {
    fn label(self) -> String {
        match (self.layer, self.head) {
            (Some(l), Some(h)) => format!("layer {} \u{b7} head {}", l + 1, h + 1),
            (Some(l), None) => format!("layer {} \u{b7} mean of heads", l + 1),
            (None, Some(h)) => format!("head {} \u{b7} mean of layers", h + 1),
            (None, None) => String::new(),
        }
    }

    fn matrix(self, heads: &Heads, kind: Kind) -> Vec<Vec<f32>> {
        match (self.layer, self.head) {
            (Some(l), Some(h)) => heads.matrix(kind, l, h),
            (Some(l), None) => heads.mean_over_heads(kind, l),
            (None, Some(h)) => heads.mean_over_layers(kind, h),
            (None, None) => Vec::new(),
        }
    }
}

/// The cells of row `r` as coloured divs of class `class`. Masked cells get the class
/// `masked` (drawn grey) instead of a colour.
fn row_cells(row: &[f32], r: usize, kind: Kind, class: &'static str) -> impl IntoView + use<> {
    row.iter()
        .enumerate()
        .map(|(c, &w)| {
            let masked = kind.masked(r, c);
            let style = if masked {
                String::new()
            } else {
                let [r, g, b] = ViewSettings::default().rgb(w);
                format!("background-color:rgb({r},{g},{b})")
            };
            view! {
                <div
                    class=class
                    class:masked=masked
                    data-row=r.to_string()
                    data-col=c.to_string()
                    data-weight=w.to_string()
                    title=format!("{w:.3}")
                    style=style
                ></div>
            }
        })
        .collect_view()
}

/// The grid for one run. `heads` fills in as steps arrive; `source` and `target` label the
/// zoomed map.
#[component]
pub fn HeadsGrid(
    heads: RwSignal<Heads>,
    source: RwSignal<Vec<String>>,
    target: Signal<Vec<String>>,
) -> impl IntoView {
    let kind = RwSignal::new(Kind::Cross);
    let aggregate = RwSignal::new(Aggregate::Each);
    let zoom = RwSignal::new(None::<Pick>);
    let picks = move || {
        let (layers, n_heads) = heads.with(Heads::dims);
        match aggregate.get() {
            Aggregate::Each => (0..layers)
                .flat_map(|l| {
                    (0..n_heads).map(move |h| Pick {
                        layer: Some(l),
                        head: Some(h),
                    })
                })
                .collect::<Vec<_>>(),
            Aggregate::MeanHeads => (0..layers)
                .map(|l| Pick {
                    layer: Some(l),
                    head: None,
                })
                .collect(),
            Aggregate::MeanLayers => (0..n_heads)
                .map(|h| Pick {
                    layer: None,
                    head: Some(h),
                })
                .collect(),
        }
    };
    let columns = move || match aggregate.get() {
        Aggregate::Each => heads.with(Heads::dims).1.max(1),
        Aggregate::MeanHeads => 1,
        Aggregate::MeanLayers => heads.with(Heads::dims).1.max(1),
    };
    let labels = move |axis_rows: bool| -> Vec<String> {
        match (kind.get(), axis_rows) {
            (Kind::Cross, true) | (Kind::DecoderSelf, _) => target.get(),
            (Kind::Cross, false) | (Kind::Encoder, _) => source.get(),
        }
    };

    view! {
        <Show when=move || heads.with(|h| h.dims() != (0, 0))>
            <section class="heads" data-testid="heads-grid" data-kind=move || kind.get().as_str()>
                <h3>"Every layer and head"</h3>
                <div class="heads-controls">
                    <div class="tabs" role="tablist" aria-label="Kind of attention">
                        {Kind::ALL
                            .iter()
                            .map(|&k| {
                                view! {
                                    <button
                                        type="button"
                                        role="tab"
                                        class="tab"
                                        data-testid=format!("kind-{}", k.as_str())
                                        aria-selected=move || (kind.get() == k).to_string()
                                        on:click=move |_| {
                                            kind.set(k);
                                            zoom.set(None);
                                        }
                                    >
                                        {k.label()}
                                    </button>
                                }
                            })
                            .collect_view()}
                    </div>
                    <label class="aggregate">
                        "Show "
                        <select
                            data-testid="heads-aggregate"
                            on:change=move |ev| {
                                aggregate.set(Aggregate::parse(&event_target_value(&ev)));
                                zoom.set(None);
                            }
                        >
                            <option value="each">"each head"</option>
                            <option value="mean-heads">"mean over heads"</option>
                            <option value="mean-layers">"mean over layers"</option>
                        </select>
                    </label>
                </div>
                <div
                    class="heads-maps"
                    style=move || format!("--head-cols:{}", columns())
                >
                    {move || {
                        let k = kind.get();
                        picks()
                            .into_iter()
                            .map(|p| {
                                let m = heads.with(|h| p.matrix(h, k));
                                let (rows, cols) = (m.len(), m.first().map_or(0, Vec::len));
                                let cell = (120 / cols.max(1)).clamp(2, 10);
                                let label = p.label();
                                view! {
                                    <button
                                        type="button"
                                        class="head-map"
                                        data-testid="head-map"
                                        data-layer=p.layer.map(|l| l.to_string()).unwrap_or_default()
                                        data-head=p.head.map(|h| h.to_string()).unwrap_or_default()
                                        data-rows=rows.to_string()
                                        data-cols=cols.to_string()
                                        aria-pressed=move || (zoom.get() == Some(p)).to_string()
                                        title=format!("{label}: click to zoom")
                                        on:click=move |_| zoom.set(Some(p))
                                    >
                                        <span class="head-label">{label.clone()}</span>
                                        <div
                                            class="mini"
                                            style=format!(
                                                "grid-template-columns:repeat({},{cell}px);grid-auto-rows:{cell}px",
                                                cols.max(1),
                                            )
                                        >
                                            {m
                                                .iter()
                                                .enumerate()
                                                .map(|(r, row)| row_cells(row, r, k, "mini-cell"))
                                                .collect_view()}
                                        </div>
                                    </button>
                                }
                            })
                            .collect_view()
                    }}
                </div>
                {move || {
                    let p = zoom.get()?;
                    let k = kind.get();
                    let m = heads.with(|h| p.matrix(h, k));
                    let cols = m.first().map_or(0, Vec::len);
                    let (row_labels, col_labels) = (labels(true), labels(false));
                    Some(view! {
                        <div class="head-zoom" data-testid="head-zoom">
                            <div class="zoom-head">
                                <h4>{format!("{} \u{b7} {}", k.label(), p.label())}</h4>
                                <button type="button" class="example" on:click=move |_| zoom.set(None)>
                                    "Close"
                                </button>
                            </div>
                            <div class="heatmap-scroll">
                                <div
                                    class="zoom-grid"
                                    style=format!("--cols:{}", cols.max(1))
                                >
                                    <div class="hm-corner" aria-hidden="true"></div>
                                    {(0..cols)
                                        .map(|c| {
                                            let piece = col_labels.get(c).cloned().unwrap_or_default();
                                            view! { <div class="src-label"><TokenText piece=piece /></div> }
                                        })
                                        .collect_view()}
                                    {m.iter()
                                        .enumerate()
                                        .map(|(r, row)| {
                                            let piece = row_labels.get(r).cloned().unwrap_or_default();
                                            view! {
                                                <div class="tgt-label"><TokenText piece=piece /></div>
                                                {row_cells(row, r, k, "cell zcell")}
                                            }
                                        })
                                        .collect_view()}
                                </div>
                            </div>
                            {(k == Kind::DecoderSelf)
                                .then(|| view! {
                                    <p class="hint">
                                        "Grey cells are hidden by the causal mask: a target token cannot look at the tokens after it."
                                    </p>
                                })}
                        </div>
                    })
                }}
            </section>
        </Show>
    }
}
