//! Lights and cut planes: bounded in number, validated, with ids that are never reused.

use crate::state::{CutPlane, Light};

use super::{CutPlaneId, LightId, MAX_CUT_PLANES, MAX_LIGHTS, Scene, SceneError};

impl Scene {
    /// Lights with their ids.
    pub fn lights(&self) -> &[(LightId, Light)] {
        &self.lights
    }

    /// Adds a light.
    pub fn add_light(&mut self, light: Light) -> Result<LightId, SceneError> {
        light.validate().map_err(SceneError::InvalidArgument)?;
        if self.lights.len() >= MAX_LIGHTS {
            return Err(SceneError::TooMany("lights", MAX_LIGHTS));
        }
        let id = self.next_light;
        self.next_light += 1;
        self.lights.push((id, light));
        self.revision += 1;
        Ok(id)
    }

    /// Replaces a light.
    pub fn update_light(&mut self, id: LightId, light: Light) -> Result<(), SceneError> {
        light.validate().map_err(SceneError::InvalidArgument)?;
        let slot = self
            .lights
            .iter_mut()
            .find(|(i, _)| *i == id)
            .ok_or(SceneError::NoSuchLight(id))?;
        slot.1 = light;
        self.revision += 1;
        Ok(())
    }

    /// Removes a light.
    pub fn remove_light(&mut self, id: LightId) -> Result<(), SceneError> {
        let before = self.lights.len();
        self.lights.retain(|(i, _)| *i != id);
        if self.lights.len() == before {
            return Err(SceneError::NoSuchLight(id));
        }
        self.revision += 1;
        Ok(())
    }

    /// Cut planes with their ids.
    pub fn cut_planes(&self) -> &[(CutPlaneId, CutPlane)] {
        &self.cut_planes
    }

    fn checked_plane(plane: CutPlane) -> Result<CutPlane, SceneError> {
        let normal = plane
            .normal
            .try_normalize()
            .filter(|_| plane.distance.is_finite())
            .ok_or_else(|| {
                SceneError::InvalidArgument(
                    "a cut plane needs a finite, non-zero normal and a finite distance".into(),
                )
            })?;
        Ok(CutPlane {
            normal,
            distance: plane.distance,
        })
    }

    /// Adds a cut plane.
    pub fn add_cut_plane(&mut self, plane: CutPlane) -> Result<CutPlaneId, SceneError> {
        let plane = Self::checked_plane(plane)?;
        if self.cut_planes.len() >= MAX_CUT_PLANES {
            return Err(SceneError::TooMany("cut planes", MAX_CUT_PLANES));
        }
        let id = self.next_plane;
        self.next_plane += 1;
        self.cut_planes.push((id, plane));
        self.revision += 1;
        Ok(id)
    }

    /// Moves a cut plane.
    pub fn update_cut_plane(&mut self, id: CutPlaneId, plane: CutPlane) -> Result<(), SceneError> {
        let plane = Self::checked_plane(plane)?;
        let slot = self
            .cut_planes
            .iter_mut()
            .find(|(i, _)| *i == id)
            .ok_or(SceneError::NoSuchCutPlane(id))?;
        slot.1 = plane;
        self.revision += 1;
        Ok(())
    }

    /// Removes a cut plane.
    pub fn remove_cut_plane(&mut self, id: CutPlaneId) -> Result<(), SceneError> {
        let before = self.cut_planes.len();
        self.cut_planes.retain(|(i, _)| *i != id);
        if self.cut_planes.len() == before {
            return Err(SceneError::NoSuchCutPlane(id));
        }
        self.revision += 1;
        Ok(())
    }
}
