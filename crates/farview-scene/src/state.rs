//! Per-entity overrides that change how a subtree is drawn without touching its assets, and the
//! scene-wide lights and cut planes. Like ARR's HierarchicalStateOverrideComponent: every field
//! is optional, and an unset field inherits from the nearest ancestor that sets it.

use glam::Vec3;

/// Hierarchical state flags; `None` inherits the parent's value.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct StateOverride {
    /// Not drawn (and not hit by raycasts).
    pub hidden: Option<bool>,
    /// Drawn semi-transparent, blended over what is behind it.
    pub see_through: Option<bool>,
    /// Drawn highlighted.
    pub selected: Option<bool>,
    /// Multiplies the lit colour by RGB and mixes by A: `mix(lit, lit * rgb, a)`; linear.
    pub tint: Option<[f32; 4]>,
    /// `KHR_materials_variants` variant to draw (an index into the drawn model's
    /// [`Model::variants`](crate::Model::variants)); primitives without a mapping for it, and
    /// models with fewer variants, draw their default material.
    pub variant: Option<u32>,
}

impl StateOverride {
    /// True when every component is finite and the tint is in [0, 1].
    pub fn is_valid(&self) -> bool {
        self.tint
            .is_none_or(|t| t.iter().all(|v| v.is_finite() && (0.0..=1.0).contains(v)))
    }

    /// `self` where set, `parent` elsewhere.
    pub fn inherit(&self, parent: &Self) -> Self {
        Self {
            hidden: self.hidden.or(parent.hidden),
            see_through: self.see_through.or(parent.see_through),
            selected: self.selected.or(parent.selected),
            tint: self.tint.or(parent.tint),
            variant: self.variant.or(parent.variant),
        }
    }
}

/// Material inputs replaced for an entity's subtree; `None` keeps the asset's value.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct MaterialOverride {
    /// Linear RGBA base colour factor (replaces the factor; the texture still applies).
    pub base_color: Option<[f32; 4]>,
    /// Metallic factor, 0..1.
    pub metallic: Option<f32>,
    /// Roughness factor, 0..1.
    pub roughness: Option<f32>,
    /// Emissive colour, linear RGB (≥ 0).
    pub emissive: Option<[f32; 3]>,
}

impl MaterialOverride {
    /// True when every value is finite and in its range.
    pub fn is_valid(&self) -> bool {
        let unit = |v: &f32| v.is_finite() && (0.0..=1.0).contains(v);
        self.base_color.is_none_or(|c| c.iter().all(unit))
            && self.metallic.as_ref().is_none_or(unit)
            && self.roughness.as_ref().is_none_or(unit)
            && self
                .emissive
                .is_none_or(|e| e.iter().all(|v| v.is_finite() && *v >= 0.0 && *v <= 1e4))
    }

    /// `self` where set, `parent` elsewhere.
    pub fn inherit(&self, parent: &Self) -> Self {
        Self {
            base_color: self.base_color.or(parent.base_color),
            metallic: self.metallic.or(parent.metallic),
            roughness: self.roughness.or(parent.roughness),
            emissive: self.emissive.or(parent.emissive),
        }
    }

    /// True when nothing is overridden.
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

/// What kind of light, as in `KHR_lights_punctual`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum LightKind {
    /// Parallel rays along `direction`; position ignored.
    Directional,
    /// From `position` in every direction.
    Point,
    /// From `position` along `direction`, full inside `inner_cone` and fading to zero at
    /// `outer_cone` (half-angles in radians, 0 ≤ inner < outer ≤ π/2).
    Spot {
        /// Inner half-angle.
        inner_cone: f32,
        /// Outer half-angle.
        outer_cone: f32,
    },
}

/// A light of the scene. Units follow the renderer's simple model: a surface facing the light
/// receives `color * intensity` (point and spot lights fall off with the inverse square of the
/// distance in metres, windowed to zero at `range`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Light {
    /// Kind.
    pub kind: LightKind,
    /// Linear RGB colour, 0..1.
    pub color: [f32; 3],
    /// Intensity (≥ 0).
    pub intensity: f32,
    /// World position (point, spot).
    pub position: Vec3,
    /// Direction the light travels (directional, spot); normalised on use.
    pub direction: Vec3,
    /// Distance where point and spot lights reach zero; `None` for no cut-off.
    pub range: Option<f32>,
}

impl Light {
    /// The host's default light: a white sun from above and in front.
    pub const SUN: Self = Self {
        kind: LightKind::Directional,
        color: [1.0, 1.0, 1.0],
        intensity: 2.2,
        position: Vec3::ZERO,
        direction: Vec3::new(-0.335_2, -0.838, -0.502_8),
        range: None,
    };

    /// Checks ranges; returns what is wrong.
    pub fn validate(&self) -> Result<(), String> {
        let finite = self.color.iter().all(|v| v.is_finite())
            && self.intensity.is_finite()
            && self.position.is_finite()
            && self.direction.is_finite()
            && self.range.is_none_or(f32::is_finite);
        if !finite {
            return Err("light has non-finite values".into());
        }
        if !self.color.iter().all(|v| (0.0..=1.0).contains(v)) {
            return Err("light colour components must be in [0, 1]".into());
        }
        if !(0.0..=1e6).contains(&self.intensity) {
            return Err("light intensity must be in [0, 1e6]".into());
        }
        if self.range.is_some_and(|r| r <= 0.0) {
            return Err("light range must be positive".into());
        }
        let needs_direction = !matches!(self.kind, LightKind::Point);
        if needs_direction && self.direction.length_squared() < 1e-12 {
            return Err("directional and spot lights need a non-zero direction".into());
        }
        if let LightKind::Spot {
            inner_cone,
            outer_cone,
        } = self.kind
            && !(inner_cone.is_finite()
                && outer_cone.is_finite()
                && 0.0 <= inner_cone
                && inner_cone < outer_cone
                && outer_cone <= std::f32::consts::FRAC_PI_2)
        {
            return Err("spot cones need 0 <= inner < outer <= pi/2".into());
        }
        Ok(())
    }
}

/// A plane that cuts the scene: points with `dot(normal, p) > distance` are not drawn (nor hit
/// by raycasts), so the kept half-space is `dot(normal, p) <= distance`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CutPlane {
    /// Plane normal (normalised on set), pointing into the cut-away side.
    pub normal: Vec3,
    /// Offset along the normal, metres.
    pub distance: f32,
}

impl CutPlane {
    /// True when `p` is on the cut-away side.
    pub fn cuts(&self, p: Vec3) -> bool {
        self.normal.dot(p) > self.distance
    }
}

/// The state a drawable is drawn with, resolved down the hierarchy.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct DrawState {
    /// Blend over the background.
    pub see_through: bool,
    /// Highlight.
    pub selected: bool,
    /// Tint (RGB, mix amount).
    pub tint: Option<[f32; 4]>,
    /// Material variant to draw: [`Primitive::material_for_variant`] picks each primitive's
    /// material; `None` draws the default materials.
    ///
    /// [`Primitive::material_for_variant`]: crate::Primitive::material_for_variant
    pub variant: Option<u32>,
    /// Material inputs replaced.
    pub material: MaterialOverride,
}
