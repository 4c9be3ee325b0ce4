//! The XML that scanners embed in their files (Philips' ImageDescription, Leica's SCN
//! collection, Ventana's XMP, OME-XML) as a small element tree, read defensively: names are
//! local (namespace prefixes dropped, the root's namespace kept), entities are the five XML
//! ones and character references only (no DTD, so no entity expansion to bomb with), and the
//! tree is bounded in depth and element count, so a document allocates in proportion to its
//! own length.

use super::error::{corrupt, Result};
use quick_xml::events::{BytesStart, Event};

/// Elements nested deeper than this are refused (real documents nest under 10).
const MAX_DEPTH: usize = 64;
/// Elements in one document (a BIF's XMP lists one per tile joint: 10^5 for a large slide).
const MAX_ELEMENTS: usize = 2_000_000;

#[derive(Debug, Default)]
pub(crate) struct Element {
    /// The local name (`a:b` → `b`).
    pub name: String,
    /// Attributes by their names as written (`xmlns` ones included), values unescaped.
    pub attributes: Vec<(String, String)>,
    pub children: Vec<Element>,
    /// The element's own text (CDATA included), untrimmed.
    pub text: String,
}

impl Element {
    /// An attribute by name, matched on the local part (`ns:Name` matches `Name`).
    pub fn attr(&self, name: &str) -> Option<&str> {
        self.attributes
            .iter()
            .find(|(k, _)| local(k) == name)
            .map(|(_, v)| v.as_str())
    }

    /// The first child of that name.
    pub fn child(&self, name: &str) -> Option<&Element> {
        self.children.iter().find(|c| c.name == name)
    }

    /// The children of that name, in document order.
    pub fn children_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Element> + 'a {
        self.children.iter().filter(move |c| c.name == name)
    }
}

fn local(name: &str) -> &str {
    name.rsplit_once(':').map_or(name, |(_, l)| l)
}

/// The document's root element.
pub(crate) fn parse(text: &str) -> Result<Element> {
    let mut reader = quick_xml::Reader::from_str(text);
    let bad = |e: &dyn std::fmt::Display| corrupt(format!("XML: {e}"));
    // The open elements, innermost last.
    let mut open: Vec<Element> = Vec::new();
    let mut root: Option<Element> = None;
    let mut count = 0usize;
    loop {
        let event = reader.read_event().map_err(|e| bad(&e))?;
        match event {
            Event::Start(ref start) | Event::Empty(ref start) => {
                count += 1;
                if count > MAX_ELEMENTS {
                    return Err(corrupt(format!("XML has more than {MAX_ELEMENTS} elements")));
                }
                if open.len() >= MAX_DEPTH {
                    return Err(corrupt(format!("XML nests deeper than {MAX_DEPTH} elements")));
                }
                if root.is_some() {
                    return Err(corrupt("XML has more than one root element"));
                }
                let element = element(start).map_err(|e| bad(&e))?;
                if matches!(event, Event::Start(_)) {
                    open.push(element);
                } else {
                    close(element, &mut open, &mut root);
                }
            }
            Event::End(_) => {
                // quick-xml checks that end tags match their start tags.
                let element = open.pop().ok_or_else(|| corrupt("XML: unmatched end tag"))?;
                close(element, &mut open, &mut root);
            }
            Event::Text(t) => {
                if let Some(e) = open.last_mut() {
                    e.text.push_str(&t.xml10_content());
                }
            }
            // Entity and character references in text arrive on their own.
            Event::GeneralRef(r) => {
                let resolved = match r.resolve_char_ref().map_err(|e| bad(&e))? {
                    Some(c) => c,
                    None => {
                        predefined(&r).ok_or_else(|| corrupt(format!("XML: undefined entity &{};", &*r)))?
                    }
                };
                if let Some(e) = open.last_mut() {
                    e.text.push(resolved);
                }
            }
            Event::CData(t) => {
                if let Some(e) = open.last_mut() {
                    e.text.push_str(&t.xml10_content());
                }
            }
            Event::DocType(_) => {
                // A DTD could declare entities; none of the documents read has one.
                return Err(corrupt("XML with a document type declaration (DTD)"));
            }
            Event::Eof => break,
            _ => {}
        }
    }
    if !open.is_empty() {
        return Err(corrupt("XML ends inside an element"));
    }
    root.ok_or_else(|| corrupt("XML has no element"))
}

/// Attaches a finished element to its parent, or makes it the root.
fn close(element: Element, open: &mut [Element], root: &mut Option<Element>) {
    match open.last_mut() {
        Some(parent) => parent.children.push(element),
        None => *root = Some(element),
    }
}

fn element(start: &BytesStart) -> std::result::Result<Element, quick_xml::Error> {
    let mut attributes = Vec::new();
    for a in start.attributes() {
        let a = a?;
        // Unescaped: the five predefined entities and character references; others refused.
        let value = a.normalized_value(quick_xml::XmlVersion::Implicit1_0)?;
        attributes.push((a.key.as_ref().to_string(), value.into_owned()));
    }
    Ok(Element {
        name: local(start.name().as_ref()).to_string(),
        attributes,
        ..Element::default()
    })
}

/// XML's five predefined entities.
fn predefined(name: &str) -> Option<char> {
    Some(match name {
        "amp" => '&',
        "lt" => '<',
        "gt" => '>',
        "quot" => '"',
        "apos" => '\'',
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::parse;

    #[test]
    fn a_tree_with_local_names_attributes_and_text() {
        let doc = r#"<?xml version="1.0"?>
<x:Root xmlns="urn:a" xmlns:x="urn:b"><Item x:k="1 &amp; 2">text &lt;here&gt;<![CDATA[<raw>]]></Item><Item/></x:Root>"#;
        let root = parse(doc).unwrap();
        assert_eq!(root.name, "Root");
        assert_eq!(root.attr("xmlns"), Some("urn:a"));
        let items: Vec<_> = root.children_named("Item").collect();
        assert_eq!(items.len(), 2);
        assert_eq!(items[0].attr("k"), Some("1 & 2"));
        assert_eq!(items[0].text, "text <here><raw>");
    }

    #[test]
    fn bombs_and_malformed_documents_are_refused() {
        let laughs = r#"<?xml version="1.0"?><!DOCTYPE l [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;">]><l>&b;</l>"#;
        assert!(parse(laughs).is_err());
        assert!(parse("<a>&undefined;</a>").is_err());
        assert!(parse("<a><b></a>").is_err());
        assert!(parse("<a>").is_err());
        assert!(parse("<a/><b/>").is_err());
        assert!(parse("").is_err());
        let deep = "<a>".repeat(100) + &"</a>".repeat(100);
        assert!(parse(&deep).unwrap_err().to_string().contains("deeper"));
    }
}
